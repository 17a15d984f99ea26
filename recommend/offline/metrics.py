"""Top-k ranking metrics with binary relevance, computed for many users at once.

``recommended`` is an ``(n_users, k)`` int array of item ints, best first, padded with -1;
``relevant`` is the test matrix (``(n_users, n_items)`` CSR; any stored entry is relevant).
Per-user values are averaged over the users that have at least one relevant item:

* precision@k = hits / k;  recall@k = hits / |relevant|;  hit rate = 1 if any hit
* NDCG@k: DCG = sum over hits of 1 / log2(rank + 2) (rank 0-based); the ideal DCG places
  min(|relevant|, k) hits at the top
* MAP@k: AP = sum over hit ranks r of precision@(r+1), divided by min(|relevant|, k)

Catalog-level: coverage = distinct recommended items / n_items; novelty = mean
self-information ``-log2(p(i))`` of the recommended items, ``p(i)`` = share of training users
who interacted with ``i`` (counts floored at 1 so unseen items stay finite).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hits_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n_users, k)``: is ``recommended[u, r]`` relevant for user ``u``?"""
    recommended = np.asarray(recommended)
    n_users, k = recommended.shape
    hits = np.zeros((n_users, k), dtype=bool)
    rows, cols = np.nonzero(recommended >= 0)
    if rows.size:
        binary = (relevant != 0).astype(np.int8).tocsr()
        hits[rows, cols] = np.asarray(binary[rows, recommended[rows, cols]]).ravel() > 0
    return hits


def ranking_metrics(
    recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None
) -> dict[str, float]:
    """Mean precision, recall, ndcg, hit_rate and map at ``k`` (default: the array width),
    plus ``users``, the number of users averaged over."""
    recommended = np.asarray(recommended)
    k = recommended.shape[1] if k is None else k
    recommended = recommended[:, :k]
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    users = n_rel > 0
    if not users.any():
        return dict.fromkeys(("precision", "recall", "ndcg", "hit_rate", "map"), 0.0) | {
            "users": 0.0
        }
    hits = hits_matrix(recommended, relevant)[users].astype(np.float64)
    n_rel = n_rel[users]
    n_hits = hits.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    ideal_hits = np.minimum(n_rel, k).astype(np.int64)
    idcg = np.cumsum(discounts)[ideal_hits - 1]
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    ap = (precision_at * hits).sum(axis=1) / ideal_hits
    return {
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / n_rel)),
        "ndcg": float(np.mean((hits @ discounts) / idcg)),
        "hit_rate": float(np.mean(n_hits > 0)),
        "map": float(np.mean(ap)),
        "users": float(users.sum()),
    }


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    ids = np.asarray(recommended)
    return float(np.unique(ids[ids >= 0]).size / n_items) if n_items else 0.0


def novelty(recommended: np.ndarray, item_user_counts: np.ndarray, n_users: int) -> float:
    """Mean self-information (bits) of the recommended items under training popularity."""
    ids = np.asarray(recommended)
    ids = ids[ids >= 0]
    if ids.size == 0 or n_users == 0:
        return 0.0
    p = np.maximum(np.asarray(item_user_counts, dtype=np.float64)[ids], 1.0) / n_users
    return float(np.mean(-np.log2(p)))

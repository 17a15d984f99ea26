"""Mixing candidate lists from several sources into one ranking.

Scores from different sources live on unrelated scales (EASE regression outputs, summed
cosines, user counts, FAISS inner products), so each source's list is first normalized to
``[0, 1]``, then combined as a weighted sum with weights from settings. Two normalizations:

* ``"rank"`` (default): an item's value is ``(n - r) / n`` for 0-based rank ``r`` in a list of
  ``n`` (ties share the better rank). Only the order within a source matters, so one outlier
  score cannot flatten the rest of its list, and lists of any scale mix predictably.
* ``"minmax"``: ``(s - min) / (max - min)`` over the list (all 1.0 if the scores are equal).
  Keeps the *gaps* a source is confident about — useful when scores are calibrated (e.g.
  cosine similarities) — but one extreme score squeezes the others towards 0.

An item missing from a source's list gets 0 from that source. Each blended item remembers the
source whose weighted contribution was largest; it becomes ``Recommendation.source`` and the
basis of ``reason``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

import numpy as np

from recommend.model import top_k
from recommend.types import Recommendation

Normalization = Literal["rank", "minmax"]
H = TypeVar("H", bound=Hashable)


def normalize_scores(scores: np.ndarray, method: Normalization = "rank") -> np.ndarray:
    """Normalize scores to ``[0, 1]`` along the last axis (1-D list or 2-D batch of lists).

    Entries equal to ``-inf`` are padding: they normalize to 0 and do not count in ``n``.
    """
    if method == "rank" and np.ndim(scores) == 1:
        # Serving normalizes a few short lists per request; a sort + searchsorted gives the
        # same "min" tie ranks as scipy's rankdata at a fraction of its per-call overhead.
        flat = np.asarray(scores, dtype=np.float64)
        valid_1d = flat > -np.inf
        n = int(valid_1d.sum())
        ranks_1d = np.searchsorted(np.sort(-flat[valid_1d]), -flat, side="left")
        return np.where(valid_1d, (n - ranks_1d) / max(n, 1), 0.0)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    valid = s > -np.inf
    n_valid = valid.sum(axis=1, keepdims=True)
    if method == "rank":
        from scipy.stats import rankdata  # offline batches only: serving takes the 1-D path

        ranks = rankdata(np.where(valid, -s, np.inf), method="min", axis=1) - 1
        out = np.where(valid, (n_valid - ranks) / np.maximum(n_valid, 1), 0.0)
    elif method == "minmax":
        lo = np.where(valid, s, np.inf).min(axis=1, keepdims=True)
        hi = np.where(valid, s, -np.inf).max(axis=1, keepdims=True)
        span = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            scaled = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
        out = np.where(valid, scaled, 0.0)
    else:
        raise ValueError(f"unknown normalization {method!r}")
    return out.reshape(np.shape(scores)) if np.ndim(scores) == 1 else out


def blend_scores(
    candidates: Mapping[str, tuple[Sequence[H], np.ndarray]],
    weights: Mapping[str, float],
    *,
    normalization: Normalization = "rank",
) -> list[tuple[H, float, str]]:
    """Blend ``{source: (ids, scores)}`` into ``[(id, blended score, top source)]``, best first.

    Sources with no weight (or weight <= 0) in ``weights`` are ignored. Ties keep the order in
    which items were first seen (sources in mapping order), so the result is deterministic.
    """
    total: dict[H, float] = {}
    best: dict[H, tuple[float, str]] = {}
    for source, (ids, scores) in candidates.items():
        weight = float(weights.get(source, 0.0))
        if weight <= 0 or len(ids) == 0:
            continue
        for item, value in zip(ids, normalize_scores(scores, normalization), strict=True):
            contribution = weight * float(value)
            total[item] = total.get(item, 0.0) + contribution
            if item not in best or contribution > best[item][0]:
                best[item] = (contribution, source)
    ranked = sorted(total.items(), key=lambda kv: -kv[1])
    return [(item, score, best[item][1]) for item, score in ranked]


def blend(
    candidates: Mapping[str, tuple[Sequence[str], np.ndarray]],
    weights: Mapping[str, float],
    k: int | None = None,
    *,
    normalization: Normalization = "rank",
    reasons: Mapping[str, str] | None = None,
) -> list[Recommendation]:
    """Blend candidate lists into at most ``k`` :class:`Recommendation` s.

    ``reasons`` maps a source name to the explanation shown for items it contributed most to
    (default ``"recommended by <source>"``).
    """
    reasons = reasons or {}
    ranked = blend_scores(candidates, weights, normalization=normalization)
    if k is not None:
        ranked = ranked[:k]
    return [
        Recommendation(item, score, source, reasons.get(source, f"recommended by {source}"))
        for item, score, source in ranked
    ]


def blend_batch(
    per_source: Mapping[str, tuple[np.ndarray, np.ndarray]],
    weights: Mapping[str, float],
    k: int,
    n_items: int,
    *,
    normalization: Normalization = "rank",
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized :func:`blend_scores` over many users, with item ints (evaluation/tuning).

    ``per_source[name] = (ids, scores)``, both ``(n_users, n)`` and padded with ``-1`` /
    ``-inf`` as :meth:`recommend.model.ItemModel.recommend_batch` returns them. Returns the
    top ``k`` blended ``(ids, scores)``, padded the same way.
    """
    n_users = next(iter(per_source.values()))[0].shape[0] if per_source else 0
    dense = np.zeros((n_users, n_items), dtype=np.float64)
    seen = np.zeros((n_users, n_items), dtype=bool)
    for source, (ids, scores) in per_source.items():
        weight = float(weights.get(source, 0.0))
        if weight <= 0:
            continue
        norm = normalize_scores(scores, normalization)
        rows, cols = np.nonzero(ids >= 0)
        np.add.at(dense, (rows, ids[rows, cols]), weight * norm[rows, cols])
        seen[rows, ids[rows, cols]] = True
    dense[~seen] = -np.inf
    ids_out, scores_out = top_k(dense, k)
    return ids_out, scores_out


def top_sources(
    lists: Mapping[str, tuple[Sequence[str], np.ndarray]], weights: Mapping[str, float]
) -> dict[str, str]:
    """For every candidate, the source whose weighted rank-normalized score is largest (as
    :func:`recommend.blend.blend_scores` names it); among sources without weight, the one that
    ranks it best. Ties go to the source listed first."""
    best: dict[str, tuple[float, float, str]] = {}
    for source, (ids, scores) in lists.items():
        weight = max(float(weights.get(source, 0.0)), 0.0)
        for item, value in zip(ids, normalize_scores(np.asarray(scores)), strict=True):
            key = (weight * float(value), float(value), source)
            if item not in best or key[:2] > best[item][:2]:
                best[item] = key
    return {item: key[2] for item, key in best.items()}

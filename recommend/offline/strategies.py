"""Evaluation strategies beyond the CF models: decayed popularity (trending), content similarity,
and a wrapper that lets a blend reuse a strategy fitted elsewhere."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.content import ContentService
from recommend.interactions import InteractionMatrix
from recommend.model import top_k
from recommend.types import RecommendError


class _ItemScores:
    """A strategy that scores every item from a ``(n_rows, n_items)`` score function."""

    name = "scores"
    chunk_rows = 512

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        ids = np.full((user_items.shape[0], k), -1, dtype=np.int64)
        scores = np.full((user_items.shape[0], k), -np.inf, dtype=np.float32)
        for lo in range(0, user_items.shape[0], self.chunk_rows):
            rows = user_items[lo : lo + self.chunk_rows]
            dense = self._scores(rows).astype(np.float32, copy=True)
            if exclude_seen:
                dense[rows.nonzero()] = -np.inf
            ids[lo : lo + self.chunk_rows], scores[lo : lo + self.chunk_rows] = top_k(dense, k)
        return ids, scores


class DecayedPopularity(_ItemScores):
    """Trending as an offline strategy: per item, the sum of its entries' weights decayed with
    ``half_life_s`` to the newest training timestamp (the same for every user)."""

    name = "trending"

    def __init__(self, half_life_s: float) -> None:
        self.half_life_s = half_life_s
        self._score = np.zeros(0, dtype=np.float64)

    def fit(self, interactions: InteractionMatrix) -> DecayedPopularity:
        ts = interactions.timestamps
        newest = float(ts.max()) if ts.size else 0.0
        decay = np.power(0.5, (newest - ts) / self.half_life_s)
        weights = interactions.matrix.data.astype(np.float64) * decay
        self._score = np.bincount(
            interactions.matrix.indices, weights, minlength=interactions.n_items
        ).astype(np.float64)
        return self

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self._score, (rows.shape[0], self._score.size))


class ContentSimilarity(_ItemScores):
    """Content as an offline strategy: the weighted mean of the user's item embeddings (from the
    serving index) against every item embedding. Items missing from the index score 0."""

    name = "content"

    def __init__(self, content: ContentService) -> None:
        self.content = content
        self._vectors = np.zeros((0, 0), dtype=np.float32)

    def fit(self, interactions: InteractionMatrix) -> ContentSimilarity:
        first = next(
            (
                self.content.item_vector(i)
                for i in interactions.item_ids
                if self.content.has_item(i)
            ),
            None,
        )
        if first is None:
            raise RecommendError("the item index holds none of the evaluated items")
        vectors = np.zeros((interactions.n_items, first.shape[0]), dtype=np.float32)
        for col, item in enumerate(interactions.item_ids):
            vec = self.content.item_vector(item)
            if vec is not None:
                vectors[col] = vec
        self._vectors = vectors
        return self

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        from sklearn.preprocessing import normalize  # offline only: serving skips sklearn

        users = normalize(np.asarray(rows @ self._vectors), norm="l2", axis=1)
        return np.asarray(users @ self._vectors.T)


class Fitted:
    """A strategy already fitted on the same training data (the hybrid reuses its sources)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name

    def fit(self, interactions: InteractionMatrix) -> Fitted:
        return self

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = self.inner.recommend_batch(user_items, k, exclude_seen=exclude_seen)
        return ids, scores

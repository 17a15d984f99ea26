"""Popularity baseline: every user gets the items the most users interacted with.

It is the yardstick CF has to beat in :mod:`recommend.offline.evaluate` (and a sane fallback for cold
visitors). Popularity counts *distinct interacting users*, not summed weights, so one heavy user
cannot make an item popular.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.model import ItemModel


class Popularity(ItemModel):
    """Scores each item by the number of users who interacted with it in training."""

    kind = "popularity"
    scores_cold_users = True

    def __init__(self) -> None:
        super().__init__()
        self._counts = np.zeros(0, dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._counts = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float32)

    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        self._require_fitted()
        return np.broadcast_to(self._counts, (user_items.shape[0], self.n_items)).copy()

    def _params(self) -> dict[str, Any]:
        return {}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self._counts}

    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        self._counts = arrays["counts"].astype(np.float32)

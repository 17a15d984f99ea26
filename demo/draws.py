"""Cheap categorical draws: a precomputed CDF and one uniform beat ``rng.choice(p=...)``,
which re-validates ``p`` on every call (it dominated catalog generation)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cdf_of(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Cumulative weights (need not sum to 1) for `draw_index`."""
    return np.cumsum(np.asarray(weights, dtype=np.float64))


def draw_index(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """One index in ``[0, len(cdf))`` with probability proportional to its weight."""
    pick = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(pick, len(cdf) - 1)

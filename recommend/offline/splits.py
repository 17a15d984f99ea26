"""Train/test splits of an :class:`~recommend.interactions.InteractionMatrix`.

All splits keep the id maps, so train and test share their shape and item ints. Randomness
comes only from the ``seed`` argument: the same input and seed give the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommend.interactions import InteractionMatrix


@dataclass(frozen=True)
class Split:
    """A train/test pair over the same users and items. ``test_mask`` (aligned with the split
    matrix's entries) says which went to test: :meth:`apply` splits another matrix with the
    same entries (e.g. other weights of the same interactions) the same way."""

    train: InteractionMatrix
    test: InteractionMatrix
    test_mask: np.ndarray | None = None

    def apply(self, other: InteractionMatrix) -> Split:
        if self.test_mask is None or other.matrix.data.shape != self.test_mask.shape:
            raise ValueError("apply needs a split of a matrix with the same entries")
        return _split(other, self.test_mask)


def _split(data: InteractionMatrix, test_mask: np.ndarray) -> Split:
    return Split(train=data.select(~test_mask), test=data.select(test_mask), test_mask=test_mask)


def temporal_split(
    data: InteractionMatrix, cutoff: float | None = None, *, test_fraction: float = 0.2
) -> Split:
    """Global temporal split: entries with ``ts >= cutoff`` go to test.

    Without ``cutoff``, the cutoff is the ``1 - test_fraction`` quantile of all timestamps, so
    about ``test_fraction`` of the entries are held out. This is the split closest to
    production (train on the past, predict the future) but leaves many users without history.
    """
    if cutoff is None:
        if data.nnz == 0:
            return _split(data, np.zeros(0, dtype=bool))
        cutoff = float(np.quantile(data.timestamps, 1.0 - test_fraction))
    return _split(data, data.timestamps >= cutoff)


def leave_last_n_split(data: InteractionMatrix, n: int = 1, *, min_train: int = 1) -> Split:
    """Per user, hold out the ``n`` most recent entries (ties: higher item int last).

    Users with fewer than ``n + min_train`` entries stay entirely in train.
    """
    test_mask = np.zeros(data.nnz, dtype=bool)
    indptr = data.matrix.indptr
    for user in range(data.n_users):
        lo, hi = indptr[user], indptr[user + 1]
        if hi - lo < n + min_train:
            continue
        order = np.lexsort((data.matrix.indices[lo:hi], data.timestamps[lo:hi]))
        test_mask[lo + order[-n:]] = True
    return _split(data, test_mask)


def random_split(
    data: InteractionMatrix, test_fraction: float = 0.25, *, seed: int = 0, min_train: int = 1
) -> Split:
    """Per user, hold out ``round(test_fraction * n_user)`` random entries (default 75/25).

    Every user keeps at least ``min_train`` entries in train; users with a single entry stay
    in train. Deterministic for a seed.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(data.nnz, dtype=bool)
    indptr = data.matrix.indptr
    for user in range(data.n_users):
        lo, hi = indptr[user], indptr[user + 1]
        size = int(hi - lo)
        n_test = min(round(test_fraction * size), size - min_train)
        if n_test <= 0:
            continue
        test_mask[lo + rng.choice(size, size=n_test, replace=False)] = True
    return _split(data, test_mask)

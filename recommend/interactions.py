"""The user x item interaction matrix and the string <-> int id maps that go with it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

#: One interaction row as callers hand it in: ``(user_id, item_id, weight, ts)``.
InteractionRow = tuple[str, str, float, float]


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """Interactions as a canonical CSR matrix plus both id maps.

    ``matrix`` is ``(n_users, n_items)`` ``float32``, sorted indices, no duplicate entries, every
    stored weight > 0. ``timestamps`` is aligned with ``matrix.data`` (same order) and holds the
    *latest* event time of each user/item pair in UTC epoch seconds; splits use it.

    Build it with :meth:`from_rows` or :meth:`from_events`; derive train/test views with
    :meth:`select`, which keeps the id maps (so matrices from one split share their shape).
    """

    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    matrix: sp.csr_matrix
    timestamps: np.ndarray
    user_index: dict[str, int] = field(init=False, repr=False)
    item_index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.user_ids), len(self.item_ids)):
            raise ValueError(
                f"matrix shape {self.matrix.shape} does not match "
                f"{len(self.user_ids)} users x {len(self.item_ids)} items"
            )
        if self.timestamps.shape != self.matrix.data.shape:
            raise ValueError("timestamps must be aligned with matrix.data")
        object.__setattr__(self, "user_index", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "item_index", {t: i for i, t in enumerate(self.item_ids)})

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[InteractionRow],
        *,
        item_ids: Sequence[str] | None = None,
    ) -> InteractionMatrix:
        """Build from ``(user_id, item_id, weight, ts)`` rows.

        Exact duplicate rows (same user, item, weight and ts — a retried delivery) count once;
        the remaining weights are summed per user/item pair, and pairs whose sum is <= 0 are
        dropped (implicit-feedback models need positive confidence). Users and items get ints in
        order of first appearance; pass ``item_ids`` to fix the item catalog and its order
        (rows with items outside it are ignored).
        """
        users: list[str] = []
        items: list[str] = []
        weights: list[float] = []
        stamps: list[float] = []
        for user_id, item_id, weight, ts in rows:
            users.append(str(user_id))
            items.append(str(item_id))
            weights.append(float(weight))
            stamps.append(float(ts))
        return cls.from_arrays(users, items, weights, stamps, item_ids=item_ids)

    @classmethod
    def from_arrays(
        cls,
        users: Sequence[str] | np.ndarray,
        items: Sequence[str] | np.ndarray,
        weights: Sequence[float] | np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
        *,
        item_ids: Sequence[str] | None = None,
    ) -> InteractionMatrix:
        """Column-wise :meth:`from_rows` (same semantics), vectorized for bulk loads."""
        user_col = np.asarray(users, dtype=str)
        item_col = np.asarray(items, dtype=str)
        w_col = np.asarray(weights, dtype=np.float64)
        t_col = np.asarray(timestamps, dtype=np.float64)
        if not user_col.shape == item_col.shape == w_col.shape == t_col.shape:
            raise ValueError("users, items, weights and timestamps must have the same length")
        user_names, user_codes = _codes_in_first_seen_order(user_col)
        if item_ids is None:
            item_names, item_codes = _codes_in_first_seen_order(item_col)
        else:
            item_names = tuple(item_ids)
            index = {t: i for i, t in enumerate(item_names)}
            uniq, inverse = np.unique(item_col, return_inverse=True)
            lookup = np.array([index.get(str(t), -1) for t in uniq], dtype=np.int64)
            item_codes = lookup[inverse] if uniq.size else np.zeros(0, dtype=np.int64)
            known = item_codes >= 0
            user_codes, item_codes = user_codes[known], item_codes[known]
            w_col, t_col = w_col[known], t_col[known]
        if user_codes.size:
            # Exact duplicate events (same user, item, weight, ts) are retried deliveries.
            stacked = np.column_stack([user_codes, item_codes, w_col, t_col])
            _, first = np.unique(stacked, axis=0, return_index=True)
            keep = np.sort(first)
            user_codes, item_codes = user_codes[keep], item_codes[keep]
            w_col, t_col = w_col[keep], t_col[keep]
        return cls._from_arrays(user_names, item_names, user_codes, item_codes, w_col, t_col)

    @classmethod
    def from_events(
        cls,
        events: Iterable[tuple[str, str, str, float]],
        event_weights: Mapping[str, float],
        *,
        item_ids: Sequence[str] | None = None,
    ) -> InteractionMatrix:
        """Build from ``(user_id, item_id, event_type, ts)`` events.

        ``event_weights`` maps each event type to its weight (e.g. ``{"view": 1, "cart": 3,
        "purchase": 5}``); event types missing from it are ignored rather than guessed.
        """
        return cls.from_rows(
            ((u, i, event_weights[e], ts) for u, i, e, ts in events if e in event_weights),
            item_ids=item_ids,
        )

    @classmethod
    def _from_arrays(
        cls,
        user_ids: tuple[str, ...],
        item_ids: tuple[str, ...],
        users: np.ndarray,
        items: np.ndarray,
        weights: np.ndarray,
        ts: np.ndarray,
    ) -> InteractionMatrix:
        n_users, n_items = len(user_ids), len(item_ids)
        if users.size:
            # Sort by (user, item), then sum weights and keep the latest ts per pair.
            key = users * max(n_items, 1) + items
            order = np.argsort(key, kind="stable")
            key, weights, ts = key[order], weights[order], ts[order]
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            key = key[starts]
            weights = np.add.reduceat(weights, starts)
            ts = np.maximum.reduceat(ts, starts)
            keep = weights > 0
            key, weights, ts = key[keep], weights[keep], ts[keep]
            users, items = np.divmod(key, max(n_items, 1))
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.add.at(indptr, users + 1, 1)
        matrix = sp.csr_matrix(
            (weights.astype(np.float32), items.astype(np.int32), np.cumsum(indptr)),
            shape=(n_users, n_items),
        )
        return cls(user_ids, item_ids, matrix, ts.astype(np.float64))

    # -- views --------------------------------------------------------------------------

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def entry_users(self) -> np.ndarray:
        """User int of every stored entry, aligned with ``matrix.data``."""
        return np.repeat(np.arange(self.n_users), np.diff(self.matrix.indptr))

    def select(self, mask: np.ndarray) -> InteractionMatrix:
        """Keep the entries where ``mask`` (aligned with ``matrix.data``) is true; same id maps."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.matrix.data.shape:
            raise ValueError("mask must be aligned with matrix.data")
        csum = np.r_[0, np.cumsum(mask)]
        indptr = csum[self.matrix.indptr]
        matrix = sp.csr_matrix(
            (self.matrix.data[mask], self.matrix.indices[mask], indptr),
            shape=self.matrix.shape,
        )
        return InteractionMatrix(self.user_ids, self.item_ids, matrix, self.timestamps[mask])

    def user_items(self, user_id: str) -> dict[str, float]:
        """``{item_id: weight}`` of one user (empty for unknown users)."""
        row = self.user_index.get(user_id)
        if row is None:
            return {}
        lo, hi = self.matrix.indptr[row], self.matrix.indptr[row + 1]
        return {
            self.item_ids[i]: float(w)
            for i, w in zip(self.matrix.indices[lo:hi], self.matrix.data[lo:hi], strict=True)
        }

    def item_user_counts(self) -> np.ndarray:
        """Number of distinct users who interacted with each item, shape ``(n_items,)``."""
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)

    def history_vector(self, history: Mapping[str, float]) -> sp.csr_matrix:
        """A ``(1, n_items)`` row from ``{item_id: weight}``; items outside the catalog are
        ignored, weights <= 0 dropped."""
        return history_row(history, self.item_index, self.n_items)

    def rows(self) -> Iterator[InteractionRow]:
        """The stored entries back as ``(user_id, item_id, weight, ts)`` rows."""
        users = self.entry_users()
        for u, i, w, t in zip(
            users, self.matrix.indices, self.matrix.data, self.timestamps, strict=True
        ):
            yield self.user_ids[u], self.item_ids[i], float(w), float(t)


def _codes_in_first_seen_order(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct values in order of first appearance, and each row's int code."""
    if values.size == 0:
        return (), np.zeros(0, dtype=np.int64)
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return tuple(str(v) for v in uniq[order]), rank[inverse.ravel()]


def history_row(
    history: Mapping[str, float], item_index: Mapping[str, int], n_items: int
) -> sp.csr_matrix:
    """``{item_id: weight}`` → ``(1, n_items)`` float32 CSR row (unknown items ignored)."""
    cols: dict[int, float] = {}
    for item_id, weight in history.items():
        col = item_index.get(item_id)
        if col is not None:
            cols[col] = cols.get(col, 0.0) + float(weight)
    idx = np.array(sorted(c for c, w in cols.items() if w > 0), dtype=np.int32)
    data = np.array([cols[c] for c in idx], dtype=np.float32)
    return sp.csr_matrix((data, idx, np.array([0, idx.size])), shape=(1, n_items))

"""User vectors: a behaviour-weighted, time-decayed mean of interacted items' vectors.

An event at time ``t`` with weight ``w`` on an item with vector ``v`` contributes
``w · 2^(-(T - t) / half_life) · v`` as of time ``T``. Every contribution decays by the
same factor as time passes, so the *direction* of the sum never changes with ``T`` — only
new events move it. That is what makes the update O(d) per event: keep the sum (and the
total weight) scaled to a reference time ``ref_time`` = the newest event seen; a newer
event rescales the state once, an older (late, out-of-order) event is simply discounted.

The user vector is the L2-normalized sum (== the normalized weighted mean when the total
weight is positive). Negative weights (dislikes, returns) are allowed and push away.
Timestamps are UTC epoch seconds; half-lives are in days.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embeddings.types import FloatMatrix, IndexMismatch

SECONDS_PER_DAY = 86_400.0

_MAGIC = b"TUV1"
_HEADER = struct.Struct("<4sIdddQ")  # magic, dimension, half-life, ref_time, weight, count


def decay_factor(age_seconds: float, half_life_days: float) -> float:
    """``2^(-age / half_life)``: 1.0 for age 0, 0.5 one half-life later."""
    return math.pow(2.0, -age_seconds / (half_life_days * SECONDS_PER_DAY))


@dataclass(frozen=True, slots=True, eq=False)
class UserVectorState:
    """Incremental state of one user's vector; immutable, updated by returning a new one.

    ``total``: float64 (d,) decayed weighted sum of item vectors as of ``ref_time``;
    ``weight``: decayed sum of weights as of ``ref_time``; ``events``: events folded in.
    """

    half_life_days: float
    total: npt.NDArray[np.float64]
    weight: float = 0.0
    ref_time: float = -math.inf
    events: int = 0

    @classmethod
    def empty(cls, dimension: int, half_life_days: float) -> UserVectorState:
        if half_life_days <= 0:
            raise ValueError("half_life_days must be > 0")
        return cls(half_life_days=half_life_days, total=np.zeros(dimension, dtype=np.float64))

    @property
    def dimension(self) -> int:
        return int(self.total.shape[0])

    def updated(
        self, item_vector: FloatMatrix, *, weight: float, timestamp: float
    ) -> UserVectorState:
        """The state after one event (O(d)); ``self`` is left unchanged."""
        vector = np.asarray(item_vector, dtype=np.float64).reshape(-1)
        if vector.shape[0] != self.dimension:
            raise IndexMismatch(f"item vector has {vector.shape[0]} dims, state {self.dimension}")
        if self.events == 0 or timestamp > self.ref_time:
            # Move the reference time forward: everything seen so far ages by the gap.
            scale = (
                0.0
                if self.events == 0
                else decay_factor(timestamp - self.ref_time, self.half_life_days)
            )
            total = self.total * scale + weight * vector
            return UserVectorState(
                self.half_life_days, total, self.weight * scale + weight, timestamp, self.events + 1
            )
        discount = weight * decay_factor(self.ref_time - timestamp, self.half_life_days)
        return UserVectorState(
            self.half_life_days,
            self.total + discount * vector,
            self.weight + discount,
            self.ref_time,
            self.events + 1,
        )

    def vector(self) -> FloatMatrix | None:
        """The normalized user vector (float32, (d,)), or None before any usable event."""
        norm = float(np.linalg.norm(self.total))
        if self.events == 0 or norm == 0.0 or not math.isfinite(norm):
            return None
        return (self.total / norm).astype(np.float32)

    def weight_at(self, now: float) -> float:
        """Total decayed weight as of ``now`` (a confidence signal: ~0 means "stale user")."""
        if self.events == 0:
            return 0.0
        return self.weight * decay_factor(max(0.0, now - self.ref_time), self.half_life_days)

    def to_bytes(self) -> bytes:
        """Compact binary form (little-endian header + float64 sum) for profile storage."""
        header = _HEADER.pack(
            _MAGIC, self.dimension, self.half_life_days, self.ref_time, self.weight, self.events
        )
        return header + self.total.astype("<f8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> UserVectorState:
        """Inverse of ``to_bytes``; ``ValueError`` on foreign or truncated data."""
        if len(data) < _HEADER.size:
            raise ValueError("user vector state is truncated")
        magic, dimension, half_life, ref_time, weight, events = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 8 * dimension:
            raise ValueError("not a user vector state (bad magic or length)")
        total = np.frombuffer(data, dtype="<f8", offset=_HEADER.size).astype(np.float64)
        return cls(half_life, total, weight, ref_time, events)


def update_user_vector(
    state: UserVectorState, item_vector: FloatMatrix, *, weight: float, timestamp: float
) -> UserVectorState:
    """Pure function form of ``UserVectorState.updated``."""
    return state.updated(item_vector, weight=weight, timestamp=timestamp)


def user_vector_from_events(
    events: Iterable[tuple[FloatMatrix, float, float]],
    *,
    dimension: int,
    half_life_days: float,
) -> UserVectorState:
    """Recompute a state from scratch from ``(item_vector, weight, timestamp)`` events.

    This is the definition the incremental updates must agree with (tests check they do);
    use it for backfills. Event order does not matter.
    """
    event_list = list(events)
    state = UserVectorState.empty(dimension, half_life_days)
    if not event_list:
        return state
    ref_time = max(ts for _, _, ts in event_list)
    total = np.zeros(dimension, dtype=np.float64)
    weight_sum = 0.0
    for vector, weight, ts in event_list:
        w = weight * decay_factor(ref_time - ts, half_life_days)
        total += w * np.asarray(vector, dtype=np.float64).reshape(-1)
        weight_sum += w
    return UserVectorState(half_life_days, total, weight_sum, ref_time, len(event_list))

"""User vectors: incremental updates agree with recomputation; persistence round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings import (
    IndexMismatch,
    UserVectorState,
    decay_factor,
    update_user_vector,
    user_vector_from_events,
)
from tests.embeddings.conftest import DIM, unit_rows

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_decay_halves_every_half_life() -> None:
    assert decay_factor(0, 7) == 1.0
    assert decay_factor(7 * DAY, 7) == pytest.approx(0.5)
    assert decay_factor(14 * DAY, 7) == pytest.approx(0.25)


def test_incremental_equals_recomputation_even_out_of_order() -> None:
    rng = np.random.default_rng(0)
    items = unit_rows(rng, 40)
    times = T0 + rng.uniform(0, 60 * DAY, size=40)
    times[10:15] = times[9] - rng.uniform(1, 20 * DAY, size=5)  # late events
    weights = rng.choice([1.0, 3.0, 5.0, -1.0], size=40)
    events = list(zip(items, weights.tolist(), times.tolist(), strict=True))

    state = UserVectorState.empty(DIM, half_life_days=14)
    for vector, weight, ts in events:
        state = update_user_vector(state, vector, weight=weight, timestamp=ts)
    scratch = user_vector_from_events(events, dimension=DIM, half_life_days=14)

    assert state.events == scratch.events == 40
    assert state.ref_time == scratch.ref_time == max(times)
    np.testing.assert_allclose(state.total, scratch.total, rtol=1e-9, atol=1e-12)
    assert state.weight == pytest.approx(scratch.weight, rel=1e-9)
    v = state.vector()
    assert v is not None and v.dtype == np.float32 and v.shape == (DIM,)
    assert float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(v, scratch.vector(), atol=1e-6)


def test_recent_events_dominate_old_ones() -> None:
    rng = np.random.default_rng(1)
    old_item, new_item = unit_rows(rng, 2)
    state = UserVectorState.empty(DIM, half_life_days=7)
    state = state.updated(old_item, weight=1.0, timestamp=T0)
    state = state.updated(new_item, weight=1.0, timestamp=T0 + 70 * DAY)  # 10 half-lives
    v = state.vector()
    assert v is not None
    assert v @ new_item > 0.99
    assert state.weight_at(T0 + 77 * DAY) == pytest.approx((1 + 2**-10) / 2)


def test_empty_state_has_no_vector_and_update_is_pure() -> None:
    empty = UserVectorState.empty(DIM, half_life_days=30)
    assert empty.vector() is None and empty.weight_at(T0) == 0.0
    item = unit_rows(np.random.default_rng(2), 1)[0]
    one = empty.updated(item, weight=2.0, timestamp=T0)
    assert empty.events == 0 and not empty.total.any()
    np.testing.assert_allclose(one.vector(), item, atol=1e-6)
    with pytest.raises(IndexMismatch):
        one.updated(np.ones(DIM + 1), weight=1.0, timestamp=T0)
    with pytest.raises(ValueError):
        UserVectorState.empty(DIM, half_life_days=0)


def test_bytes_round_trip_and_rejects_garbage() -> None:
    rng = np.random.default_rng(3)
    state = UserVectorState.empty(DIM, half_life_days=10)
    for n, item in enumerate(unit_rows(rng, 5)):
        state = state.updated(item, weight=1.0 + n, timestamp=T0 + n * DAY)

    restored = UserVectorState.from_bytes(state.to_bytes())

    assert (restored.half_life_days, restored.ref_time, restored.weight, restored.events) == (
        state.half_life_days,
        state.ref_time,
        state.weight,
        state.events,
    )
    np.testing.assert_array_equal(restored.total, state.total)
    # Keeps updating identically after the round trip.
    item = unit_rows(rng, 1)[0]
    a = state.updated(item, weight=1.0, timestamp=T0 + 9 * DAY)
    b = restored.updated(item, weight=1.0, timestamp=T0 + 9 * DAY)
    np.testing.assert_array_equal(a.total, b.total)
    with pytest.raises(ValueError):
        UserVectorState.from_bytes(b"nonsense")
    with pytest.raises(ValueError):
        UserVectorState.from_bytes(state.to_bytes()[:-8])

from __future__ import annotations

import numpy as np

from recommend.interactions import InteractionMatrix
from recommend.offline.splits import leave_last_n_split, random_split, temporal_split


def many_users(n_users: int = 30, per_user: int = 8) -> InteractionMatrix:
    rows = [
        (f"u{u}", f"i{(u * 3 + j) % 40}", 1.0, float(u + j * 10))
        for u in range(n_users)
        for j in range(per_user)
    ]
    return InteractionMatrix.from_rows(rows)


def as_set(data: InteractionMatrix) -> set[tuple[str, str]]:
    return {(u, i) for u, i, _, _ in data.rows()}


def test_random_split_partitions_75_25_per_user() -> None:
    data = many_users()
    split = random_split(data, 0.25, seed=1)
    assert as_set(split.train) | as_set(split.test) == as_set(data)
    assert not as_set(split.train) & as_set(split.test)
    assert split.train.item_ids == data.item_ids == split.test.item_ids
    assert (np.diff(split.test.matrix.indptr) == 2).all()  # round(0.25 * 8)


def test_random_split_is_deterministic_for_a_seed() -> None:
    data = many_users()
    first = random_split(data, seed=5)
    assert as_set(first.test) == as_set(random_split(data, seed=5).test)
    assert as_set(first.test) != as_set(random_split(data, seed=6).test)


def test_random_split_keeps_tiny_users_in_train() -> None:
    data = InteractionMatrix.from_rows(
        [("solo", "a", 1.0, 1.0), ("pair", "a", 1.0, 1.0), ("pair", "b", 1.0, 2.0)]
    )
    split = random_split(data, 0.5, seed=0)
    assert split.train.user_items("solo") == {"a": 1.0}
    assert len(split.train.user_items("pair")) == 1 and len(split.test.user_items("pair")) == 1


def test_leave_last_n_holds_out_the_newest() -> None:
    data = many_users()
    split = leave_last_n_split(data, n=2)
    for user in data.user_ids:
        test_ts = [t for u, _, _, t in split.test.rows() if u == user]
        train_ts = [t for u, _, _, t in split.train.rows() if u == user]
        assert len(test_ts) == 2
        assert min(test_ts) > max(train_ts)


def test_temporal_split_uses_one_global_cutoff() -> None:
    data = many_users()
    split = temporal_split(data, cutoff=50.0)
    assert all(t < 50.0 for *_, t in split.train.rows())
    assert all(t >= 50.0 for *_, t in split.test.rows())
    by_fraction = temporal_split(data, test_fraction=0.25)
    assert abs(by_fraction.test.nnz / data.nnz - 0.25) < 0.1

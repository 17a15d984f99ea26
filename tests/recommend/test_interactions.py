from __future__ import annotations

import numpy as np
import pytest

from recommend.interactions import InteractionMatrix


def test_ids_map_both_ways_in_first_seen_order() -> None:
    data = InteractionMatrix.from_rows(
        [("u1", "i1", 1.0, 10.0), ("u2", "i2", 1.0, 11.0), ("u1", "i3", 2.0, 12.0)]
    )
    assert data.user_ids == ("u1", "u2")
    assert data.item_ids == ("i1", "i2", "i3")
    assert data.user_index == {"u1": 0, "u2": 1}
    assert data.item_index["i3"] == 2
    assert data.matrix.shape == (2, 3)
    assert data.matrix.dtype == np.float32
    assert data.user_items("u1") == {"i1": 1.0, "i3": 2.0}
    assert data.user_items("nobody") == {}


def test_repeated_events_sum_but_exact_duplicates_count_once() -> None:
    data = InteractionMatrix.from_rows(
        [
            ("u", "i", 1.0, 10.0),
            ("u", "i", 1.0, 10.0),  # retried delivery of the same event
            ("u", "i", 2.0, 20.0),
            ("u", "j", 1.0, 5.0),
        ]
    )
    assert data.nnz == 2
    assert data.user_items("u") == {"i": 3.0, "j": 1.0}
    # the latest timestamp of the pair is kept
    by_item = dict(zip(data.matrix.indices.tolist(), data.timestamps.tolist(), strict=True))
    assert by_item[data.item_index["i"]] == 20.0


def test_event_weights_come_from_the_caller_and_unknown_types_are_ignored() -> None:
    data = InteractionMatrix.from_events(
        [
            ("u", "i", "view", 1.0),
            ("u", "i", "purchase", 2.0),
            ("u", "j", "hover", 3.0),
            ("v", "j", "view", 4.0),
        ],
        {"view": 1.0, "purchase": 5.0},
    )
    assert data.user_items("u") == {"i": 6.0}
    assert data.user_items("v") == {"j": 1.0}


def test_non_positive_sums_are_dropped() -> None:
    data = InteractionMatrix.from_rows([("u", "i", 1.0, 1.0), ("u", "i", -1.0, 2.0)])
    assert data.nnz == 0
    assert data.matrix.shape == (1, 1)


def test_fixed_item_catalog_keeps_order_and_drops_outsiders() -> None:
    data = InteractionMatrix.from_rows(
        [("u", "b", 1.0, 1.0), ("u", "zzz", 1.0, 1.0)], item_ids=["a", "b"]
    )
    assert data.item_ids == ("a", "b")
    assert data.matrix.toarray().tolist() == [[0.0, 1.0]]


def test_select_keeps_id_maps_and_aligned_timestamps(clusters: InteractionMatrix) -> None:
    mask = clusters.timestamps >= 2.0
    late = clusters.select(mask)
    assert late.matrix.shape == clusters.matrix.shape
    assert late.item_ids == clusters.item_ids
    assert late.nnz == int(mask.sum())
    assert set(late.user_items("u1")) == {"b", "c"}
    assert sorted(late.rows()) == sorted(r for r in clusters.rows() if r[3] >= 2.0)
    with pytest.raises(ValueError):
        clusters.select(np.ones(3, dtype=bool))


def test_history_vector_ignores_unknown_items(clusters: InteractionMatrix) -> None:
    row = clusters.history_vector({"a": 2.0, "nope": 5.0, "b": 0.0})
    assert row.shape == (1, clusters.n_items)
    assert row.indices.tolist() == [clusters.item_index["a"]]
    assert row.data.tolist() == [2.0]


def test_item_user_counts(clusters: InteractionMatrix) -> None:
    counts = dict(zip(clusters.item_ids, clusters.item_user_counts().tolist(), strict=True))
    assert counts["c"] == 4
    assert counts["lonely"] == 1


def test_empty_input_and_empty_selection() -> None:
    empty = InteractionMatrix.from_rows([])
    assert empty.matrix.shape == (0, 0) and empty.nnz == 0
    data = InteractionMatrix.from_rows([("u", "i", 1.0, 1.0), ("v", "j", 1.0, 2.0)])
    none = data.select(np.zeros(data.nnz, dtype=bool))
    assert none.nnz == 0 and none.matrix.shape == (2, 2)
    assert none.user_items("u") == {}


def test_from_arrays_matches_from_rows() -> None:
    rows = [("u", "i", 1.0, 1.0), ("u", "i", 1.0, 1.0), ("v", "j", 2.0, 2.0), ("u", "j", 1.0, 3.0)]
    by_rows = InteractionMatrix.from_rows(rows)
    by_arrays = InteractionMatrix.from_arrays(*(list(col) for col in zip(*rows, strict=True)))
    assert by_arrays.user_ids == by_rows.user_ids and by_arrays.item_ids == by_rows.item_ids
    assert (by_arrays.matrix != by_rows.matrix).nnz == 0
    np.testing.assert_array_equal(by_arrays.timestamps, by_rows.timestamps)
    with pytest.raises(ValueError):
        InteractionMatrix.from_arrays(["u"], ["i", "j"], [1.0], [1.0])

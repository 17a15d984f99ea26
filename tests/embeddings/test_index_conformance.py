"""The VectorIndex contract, run against every implementation (see conftest.INDEX_FACTORIES)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embeddings import MISSING_SCORE, IndexMismatch, ItemMeta, SearchFilter, VectorIndex
from tests.embeddings.conftest import DIM, IndexFactory, brute_force, unit_rows


def _filled(
    make_index: IndexFactory, n: int = 200, seed: int = 0
) -> tuple[VectorIndex, np.ndarray, list[str], list[ItemMeta]]:
    rng = np.random.default_rng(seed)
    matrix = unit_rows(rng, n)
    ids = [f"item-{i}" for i in range(n)]
    meta = [
        ItemMeta(categories=frozenset({"shoes" if i % 3 == 0 else "dresses"}), available=i % 4 != 0)
        for i in range(n)
    ]
    index = make_index(DIM)
    index.add(ids, matrix, meta)
    return index, matrix, ids, meta


def test_implements_protocol(make_index: IndexFactory) -> None:
    assert isinstance(make_index(DIM), VectorIndex)


def test_search_returns_the_true_nearest_neighbours(make_index: IndexFactory) -> None:
    index, matrix, ids, _ = _filled(make_index)
    queries = unit_rows(np.random.default_rng(1), 5)

    got_ids, scores = index.search(queries, 10)

    assert scores.shape == (5, 10) and scores.dtype == np.float32
    for q, row in enumerate(got_ids):
        assert row == brute_force(matrix, ids, queries[q], 10)
        expected = [float(matrix[ids.index(i)] @ queries[q]) for i in row]
        np.testing.assert_allclose(scores[q], expected, rtol=1e-5, atol=1e-6)
        assert list(scores[q]) == sorted(scores[q], reverse=True)


def test_an_item_is_its_own_nearest_neighbour(make_index: IndexFactory) -> None:
    index, matrix, _, _ = _filled(make_index)
    got, scores = index.search(matrix[42], 1)
    assert got == [["item-42"]]
    assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_len_contains_ids_vector_and_meta(make_index: IndexFactory) -> None:
    index, matrix, ids, meta = _filled(make_index, n=30)
    assert len(index) == 30
    assert "item-7" in index and "item-99" not in index and 7 not in index
    assert sorted(index.ids()) == sorted(ids)
    np.testing.assert_allclose(index.vector("item-7"), matrix[7], atol=1e-6)
    assert index.meta("item-3") == meta[3]
    with pytest.raises(KeyError):
        index.vector("nope")


def test_readding_an_id_replaces_vector_and_meta(make_index: IndexFactory) -> None:
    index, matrix, _, _ = _filled(make_index, n=50)
    new_vector = matrix[10]  # item-5 now points where item-10 points
    index.add(["item-5"], new_vector[None, :], [ItemMeta(frozenset({"bags"}), True)])

    assert len(index) == 50
    np.testing.assert_allclose(index.vector("item-5"), new_vector, atol=1e-6)
    assert index.meta("item-5").categories == {"bags"}
    got, _ = index.search(matrix[10], 2)
    assert sorted(got[0]) == ["item-10", "item-5"]
    # The old position of item-5 no longer answers for it.
    got, _ = index.search(matrix[5], 1)
    assert got[0] != ["item-5"]


def test_remove_forgets_items_and_ignores_unknown_ids(make_index: IndexFactory) -> None:
    index, matrix, ids, _ = _filled(make_index, n=60)
    removed = index.remove(["item-1", "item-2", "ghost", "item-1"])

    assert removed == 2
    assert len(index) == 58 and "item-1" not in index
    got, _ = index.search(matrix[1], 60)
    assert "item-1" not in got[0] and "item-2" not in got[0]
    assert len(got[0]) == 58
    remaining = [i for i in ids if i not in {"item-1", "item-2"}]
    keep = [ids.index(i) for i in remaining]
    assert got[0][:5] == brute_force(matrix[keep], remaining, matrix[1], 5)


def test_filters_exclude_allowed_categories_and_availability(make_index: IndexFactory) -> None:
    index, matrix, ids, meta = _filled(make_index)
    query = matrix[0]
    flt = SearchFilter(
        exclude_ids=frozenset({"item-0", "item-3"}),
        categories=frozenset({"shoes"}),
        available_only=True,
    )

    got, _ = index.search(query, 10, flt)

    eligible = [
        i
        for i, m in zip(ids, meta, strict=True)
        if i not in flt.exclude_ids and "shoes" in m.categories and m.available
    ]
    rows = [ids.index(i) for i in eligible]
    assert got[0] == brute_force(matrix[rows], eligible, query, 10)


def test_allowed_ids_restricts_results(make_index: IndexFactory) -> None:
    index, matrix, ids, _ = _filled(make_index)
    allowed = frozenset(ids[100:120]) | {"not-in-index"}
    got, scores = index.search(matrix[0], 5, SearchFilter(allowed_ids=allowed))

    rows = list(range(100, 120))
    assert got[0] == brute_force(matrix[rows], ids[100:120], matrix[0], 5)
    assert np.all(np.isfinite(scores))


def test_default_filter_is_no_filter(make_index: IndexFactory) -> None:
    index, matrix, _, _ = _filled(make_index)
    assert index.search(matrix[:3], 7, SearchFilter())[0] == index.search(matrix[:3], 7)[0]


def test_selective_filter_over_fetches_until_k_found(make_index: IndexFactory) -> None:
    # Only 5 of 300 items are eligible and they are far from the query: a naive top-k*2
    # fetch would find none of them.
    rng = np.random.default_rng(3)
    matrix = unit_rows(rng, 300)
    query = matrix[0]
    far = np.argsort(matrix @ query)[:5]  # the 5 least similar items
    ids = [f"i{n}" for n in range(300)]
    meta = [ItemMeta(frozenset({"rare"} if n in far else {"common"}), True) for n in range(300)]
    index = make_index(DIM)
    index.add(ids, matrix, meta)

    got, scores = index.search(query, 5, SearchFilter(categories=frozenset({"rare"})))

    assert sorted(got[0]) == sorted(ids[n] for n in far)
    assert np.all(np.isfinite(scores))


def test_exhausted_catalog_gives_short_rows_padded_scores(make_index: IndexFactory) -> None:
    index, matrix, _, _ = _filled(make_index, n=4)
    got, scores = index.search(matrix[:2], 10)
    assert [len(r) for r in got] == [4, 4]
    assert scores.shape == (2, 10)
    assert np.all(np.isfinite(scores[:, :4]))
    assert np.all(scores[:, 4:] == MISSING_SCORE)

    got, scores = index.search(matrix[0], 3, SearchFilter(categories=frozenset({"shoes"})))
    assert got == [["item-0", "item-3"]]  # the query item itself first, at cosine 1
    assert scores[0, 2] == MISSING_SCORE


def test_empty_index(make_index: IndexFactory) -> None:
    index = make_index(DIM)
    assert len(index) == 0
    got, scores = index.search(np.ones((2, DIM), np.float32) / 4.0, 3)
    assert got == [[], []]
    assert scores.shape == (2, 3) and np.all(scores == MISSING_SCORE)
    assert index.remove(["x"]) == 0
    index.add([], np.zeros((0, DIM), np.float32))
    assert len(index) == 0


def test_rejects_bad_input(make_index: IndexFactory) -> None:
    index = make_index(DIM)
    with pytest.raises(IndexMismatch):
        index.add(["a"], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(ValueError):
        index.add(["a", "b"], np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError):
        index.add(["a", "a"], np.ones((2, DIM), np.float32))
    index.add(["a"], np.ones((1, DIM), np.float32) / 4.0)
    with pytest.raises(IndexMismatch):
        index.search(np.ones((1, DIM - 1), np.float32), 1)
    with pytest.raises(ValueError):
        index.search(np.ones((1, DIM), np.float32), 0)


def test_save_load_round_trip(make_index: IndexFactory, tmp_path: Path) -> None:
    index, matrix, _, _ = _filled(make_index)
    index.remove(["item-9"])
    index.add(["item-10"], matrix[11][None, :])
    before = index.search(matrix[:8], 10, SearchFilter(available_only=True))

    index.save(tmp_path / "idx")
    loaded = type(index).load(tmp_path / "idx")

    assert len(loaded) == len(index) and "item-9" not in loaded
    assert loaded.meta("item-4") == index.meta("item-4")
    np.testing.assert_allclose(loaded.vector("item-10"), matrix[11], atol=1e-6)
    after = loaded.search(matrix[:8], 10, SearchFilter(available_only=True))
    assert after[0] == before[0]
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5)
    # The loaded index stays mutable.
    loaded.add(["fresh"], matrix[0][None, :])
    assert loaded.search(matrix[0], 2)[0][0] in (["fresh", "item-0"], ["item-0", "fresh"])


def test_search_filter_freezes_plain_collections() -> None:
    flt = SearchFilter(exclude_ids={"a"}, allowed_ids=["a", "b"], categories={"x"})  # type: ignore[arg-type]
    assert flt == SearchFilter(frozenset({"a"}), frozenset({"a", "b"}), frozenset({"x"}))
    assert hash(flt) == hash(
        SearchFilter(frozenset({"a"}), frozenset({"a", "b"}), frozenset({"x"}))
    )
    assert not flt.admits("a", ItemMeta(frozenset({"x"})))
    assert flt.admits("b", ItemMeta(frozenset({"x", "y"})))
    assert not flt.admits("b", ItemMeta(frozenset({"y"})))

"""FaissIndex specifics beyond the shared contract: kinds, tombstones, threads, files."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from embeddings import ArtifactError, FaissIndex, SearchFilter
from embeddings.faiss_index import BACKGROUND_NICE
from tests.embeddings.conftest import DIM, brute_force, unit_rows


def test_converts_to_hnsw_past_threshold_and_keeps_results() -> None:
    rng = np.random.default_rng(0)
    matrix = unit_rows(rng, 120)
    ids = [f"i{n}" for n in range(120)]
    index = FaissIndex(DIM, hnsw_threshold=100)

    index.add(ids[:100], matrix[:100])
    assert index.kind == "exact"
    index.add(ids[100:], matrix[100:])  # the live index converts in the background
    got, _ = index.search(matrix[110], 5)  # served meanwhile, whichever kind is current
    assert got[0] == brute_force(matrix, ids, matrix[110], 5)
    assert index.wait_for_rebuild(30)
    assert index.kind == "hnsw" and not index.rebuilding

    assert len(index) == 120
    got, _ = index.search(matrix[110], 5)
    assert got[0] == brute_force(matrix, ids, matrix[110], 5)


def test_hnsw_tombstones_are_skipped_then_compacted() -> None:
    rng = np.random.default_rng(1)
    matrix = unit_rows(rng, 100)
    ids = [f"i{n}" for n in range(100)]
    index = FaissIndex(DIM, hnsw_threshold=0, tombstone_fraction=0.3)
    index.add(ids, matrix)

    index.remove(ids[:20])
    index.add(ids[20:25], matrix[:5])  # replacements also leave tombstones behind
    assert index.kind == "hnsw"
    assert index.tombstones == 25
    got, _ = index.search(matrix[:3], 100)
    for row in got:
        assert len(row) == 80 and not set(row) & set(ids[:20])
    assert got[0][0] == "i20"  # i20 now carries matrix[0]

    index.remove(ids[25:40])  # 40 dead of 120 stored > 30 %: rebuilt without them
    assert index.wait_for_rebuild(30)
    assert index.tombstones == 0 and len(index) == 65
    got, _ = index.search(matrix[50], 3)
    keep = list(range(40, 100))
    live_ids = [ids[n] for n in keep] + ids[20:25]
    live = np.vstack([matrix[keep], matrix[:5]])
    assert got[0] == brute_force(live, live_ids, matrix[50], 3)


def test_compact_drops_to_exact_when_small_again() -> None:
    rng = np.random.default_rng(2)
    matrix = unit_rows(rng, 60)
    index = FaissIndex(DIM, hnsw_threshold=50, tombstone_fraction=1.0)
    index.add([f"i{n}" for n in range(60)], matrix)
    assert index.kind == "hnsw"
    index.remove([f"i{n}" for n in range(30)])
    assert index.tombstones == 30
    index.compact()
    assert index.kind == "exact" and index.tombstones == 0 and len(index) == 30


def test_huge_fetch_on_hnsw_scans_exactly() -> None:
    # A filter admitting one item ranked last must still find it on an HNSW index.
    rng = np.random.default_rng(4)
    matrix = unit_rows(rng, 400)
    ids = [f"i{n}" for n in range(400)]
    index = FaissIndex(DIM, hnsw_threshold=0, ef_search=16)
    index.add(ids, matrix)
    worst = ids[int(np.argmin(matrix @ matrix[0]))]
    flt = SearchFilter(exclude_ids=frozenset(set(ids) - {worst}))

    got, _ = index.search(matrix[0], 3, flt)

    assert got == [[worst]]


def test_ef_search_is_settable_and_persisted(tmp_path: Path) -> None:
    index = FaissIndex(DIM, hnsw_threshold=0, ef_search=40)
    index.add(["a", "b"], unit_rows(np.random.default_rng(5), 2))
    index.ef_search = 200
    index.save(tmp_path)
    loaded = FaissIndex.load(tmp_path)
    assert loaded.ef_search == 200 and loaded.params == index.params
    assert loaded.kind == "hnsw"


def test_single_query_restores_openmp_threads() -> None:
    index = FaissIndex(DIM)
    index.add(["a"], unit_rows(np.random.default_rng(6), 1))
    before = faiss.omp_get_max_threads()
    index.search(np.ones(DIM, np.float32) / 4.0, 1)
    assert faiss.omp_get_max_threads() == before


def test_concurrent_searches_during_writes_see_consistent_results() -> None:
    rng = np.random.default_rng(7)
    base = unit_rows(rng, 500)
    extra = unit_rows(rng, 500)
    index = FaissIndex(DIM, hnsw_threshold=600)  # converts to HNSW mid-test
    index.add([f"b{n}" for n in range(500)], base)
    errors: list[BaseException] = []
    searches: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                got, scores = index.search(base[3], 1)
                # b3 is never touched by the writer: always its own best match.
                assert got == [["b3"]] and scores[0, 0] > 0.999
                searches.append(1)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 500, 50):
        index.add([f"x{n}" for n in range(start, start + 50)], extra[start : start + 50])
        index.remove([f"b{n}" for n in range(400 + start // 10, 405 + start // 10)])
    assert index.wait_for_rebuild(30)
    stop.set()
    for t in threads:
        t.join()

    assert not errors, errors[0]
    assert searches  # the readers really ran alongside the writer
    assert index.kind == "hnsw" and len(index) == 950


class _GatedBuild:
    """A FAISS index whose first ``add_with_ids`` (the rebuild's bulk build) waits for a gate."""

    def __init__(self, inner: Any, started: threading.Event, gate: threading.Event) -> None:
        self._inner, self._started, self._gate = inner, started, gate
        self._first = True

    def add_with_ids(self, x: np.ndarray, labels: np.ndarray) -> None:
        if self._first:
            self._first = False
            self._started.set()
            assert self._gate.wait(30)
        self._inner.add_with_ids(x, labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_compaction_builds_off_the_lock_while_searches_and_writes_go_on() -> None:
    rng = np.random.default_rng(9)
    matrix = unit_rows(rng, 100)
    ids = [f"i{n}" for n in range(100)]
    started, gate = threading.Event(), threading.Event()
    gated = False

    class SlowBuild(FaissIndex):
        def _new_faiss_index(self, kind: Any) -> Any:
            inner = super()._new_faiss_index(kind)
            return _GatedBuild(inner, started, gate) if gated else inner

    index = SlowBuild(DIM, hnsw_threshold=0, tombstone_fraction=0.2)
    index.add(ids, matrix)
    gated = True
    index.remove(ids[:30])  # 30 % dead > 20 %: a background compaction starts
    assert started.wait(30) and index.rebuilding

    # The new graph is being built (and held there): reads and writes are not blocked.
    live = list(range(30, 100))
    got, _ = index.search(matrix[50], 3)
    assert got[0] == brute_force(matrix[live], [ids[n] for n in live], matrix[50], 3)
    extra = unit_rows(rng, 1)
    index.add(["new"], extra)
    index.remove(ids[30:32])
    assert index.tombstones == 32 and index.kind == "hnsw"

    gate.set()
    assert index.wait_for_rebuild(30) and not index.rebuilding
    # The copy's dead rows are gone; what changed during the build was replayed.
    assert index.tombstones == 2 and len(index) == 69
    got, _ = index.search(extra[0], 1)
    assert got == [["new"]]
    live_ids = [ids[n] for n in range(32, 100)] + ["new"]
    live_rows = np.vstack([matrix[32:], extra])
    got, _ = index.search(matrix[60], 5)
    assert got[0] == brute_force(live_rows, live_ids, matrix[60], 5)


def test_builds_use_build_threads_and_single_queries_one(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (seen.append(n), real(n)))
    index = FaissIndex(DIM, hnsw_threshold=0, build_threads=3)
    matrix = unit_rows(np.random.default_rng(10), 50)
    index.add([f"i{n}" for n in range(50)], matrix)
    assert seen[0] == 3 and index.kind == "hnsw"
    seen.clear()
    index.search(matrix[0], 1)
    assert seen[0] == 1
    seen.clear()
    index.compact()
    assert seen[0] == 3


def test_load_of_missing_or_corrupt_files_raises(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        FaissIndex.load(tmp_path / "nothing")
    index = FaissIndex(DIM)
    index.add(["a"], unit_rows(np.random.default_rng(8), 1))
    index.save(tmp_path / "v")
    (tmp_path / "v" / "index.faiss").write_bytes(b"garbage")
    with pytest.raises(ArtifactError):
        FaissIndex.load(tmp_path / "v")


def _may_raise_priority() -> bool:
    """Whether a thread of this process may lower its niceness again (CAP_SYS_NICE/RLIMIT_NICE)."""
    result: list[bool] = []

    def probe() -> None:
        tid = threading.get_native_id()
        own = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, own + 1)
        try:
            os.setpriority(os.PRIO_PROCESS, tid, own)
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return result[0]


def test_a_background_rebuild_builds_at_low_priority_and_swaps_at_the_searches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    matrix = unit_rows(rng, 200)
    ids = [f"i{n}" for n in range(200)]
    index = FaissIndex(DIM, hnsw_threshold=0, tombstone_fraction=0.25)
    index.add(ids, matrix)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: dict[str, int] = {}
    write, new_index = index._lock.write, index._new_faiss_index

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    @contextmanager
    def recording_write() -> Iterator[None]:
        if threading.current_thread().name == "faiss-rebuild":
            seen["swap"] = niceness()
        with write():
            yield

    def recording_new_index(kind: Any) -> Any:
        if threading.current_thread().name == "faiss-rebuild":
            seen["build"] = niceness()
        return new_index(kind)

    monkeypatch.setattr(index._lock, "write", recording_write)
    monkeypatch.setattr(index, "_new_faiss_index", recording_new_index)
    index.remove(ids[:80])  # 40% tombstones: a background compaction
    assert index.wait_for_rebuild(30) and index.tombstones == 0
    assert seen["build"] == min(own + BACKGROUND_NICE, 19)
    # Back at the searches' priority for the exclusive swap where the process may raise it.
    assert seen["swap"] == (own if _may_raise_priority() else seen["build"])
    assert niceness() == own  # the caller's thread never changed


@pytest.mark.parametrize("storage", ["sq8", "fp16"])
def test_quantized_graph_keeps_exact_vectors_scores_and_scans(storage: str) -> None:
    # The graph walks quantized codes; vector(), scores, the exact-scan fallback and the
    # rebuild all read the float vectors kept beside it.
    rng = np.random.default_rng(11)
    matrix = unit_rows(rng, 400)
    ids = [f"i{n}" for n in range(400)]
    index = FaissIndex(DIM, hnsw_threshold=0, ef_search=16, hnsw_storage=storage)  # type: ignore[arg-type]
    index.add(ids, matrix)
    assert index.kind == "hnsw" and index.params["hnsw_storage"] == storage
    np.testing.assert_array_equal(index.vector("i7"), matrix[7])  # bit-exact, not decoded

    got, scores = index.search(matrix[3], 5)
    assert got[0][0] == "i3"
    expected = [float(matrix[ids.index(i)] @ matrix[3]) for i in got[0]]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-6)  # exact re-ranked scores

    worst = ids[int(np.argmin(matrix @ matrix[0]))]
    flt = SearchFilter(exclude_ids=frozenset(set(ids) - {worst}))
    assert index.search(matrix[0], 3, flt)[0] == [[worst]]  # the exact scan of the floats

    index.remove(ids[:150])  # 37.5 % tombstones: a background rebuild, retrained on the live
    assert index.wait_for_rebuild(30) and index.tombstones == 0
    np.testing.assert_array_equal(index.vector("i300"), matrix[300])
    index.ef_search = 128
    live = list(range(150, 400))
    got, _ = index.search(matrix[200], 10)
    assert got[0] == brute_force(matrix[live], [ids[n] for n in live], matrix[200], 10)


def test_quantized_graph_trained_on_one_vector_still_finds_later_ones() -> None:
    # A first add of a single vector must not leave the 8-bit codes an empty range.
    rng = np.random.default_rng(12)
    matrix = unit_rows(rng, 300)
    ids = [f"i{n}" for n in range(300)]
    index = FaissIndex(DIM, hnsw_threshold=0, ef_search=128, hnsw_storage="sq8")
    index.add(ids[:1], matrix[:1])
    index.add(ids[1:], matrix[1:])
    for q in (5, 120, 299):
        assert index.search(matrix[q], 10)[0][0] == brute_force(matrix, ids, matrix[q], 10)


def test_an_index_saved_before_hnsw_storage_existed_loads_as_flat(tmp_path: Path) -> None:
    index = FaissIndex(DIM, hnsw_threshold=0, hnsw_storage="flat")  # what every index was
    index.add(["a", "b", "c"], unit_rows(np.random.default_rng(13), 3))
    index.save(tmp_path)
    items = json.loads((tmp_path / "items.json").read_text())
    for key in ("hnsw_storage", "refine_factor"):
        del items["params"][key]
    (tmp_path / "items.json").write_text(json.dumps(items))

    loaded = FaissIndex.load(tmp_path)

    assert loaded.params["hnsw_storage"] == "flat" and loaded.kind == "hnsw"
    assert loaded.search(loaded.vector("b"), 1)[0] == [["b"]]
    loaded.ef_search = 77  # the setter still reaches the graph


@pytest.mark.parametrize("storage", ["sq8", "fp16"])
def test_quantized_graph_round_trips_with_its_storage(storage: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    matrix = unit_rows(rng, 200)
    ids = [f"i{n}" for n in range(200)]
    index = FaissIndex(
        DIM,
        hnsw_threshold=0,
        ef_search=50,
        hnsw_storage=storage,
        refine_factor=3.0,  # type: ignore[arg-type]
    )
    index.add(ids, matrix)
    index.save(tmp_path)
    loaded = FaissIndex.load(tmp_path)
    assert loaded.params == index.params and loaded.ef_search == 50
    np.testing.assert_array_equal(loaded.vector("i9"), matrix[9])
    assert loaded.search(matrix[:4], 10)[0] == index.search(matrix[:4], 10)[0]


def test_unknown_hnsw_storage_or_refine_factor_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="hnsw_storage"):
        FaissIndex(DIM, hnsw_storage="pq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refine_factor"):
        FaissIndex(DIM, refine_factor=0.5)

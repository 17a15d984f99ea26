"""Versioned index artifacts and the hot-swap holder."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from embeddings import ArtifactError, FaissIndex, IndexHolder, IndexMismatch, IndexStore
from tests.embeddings.conftest import DIM, unit_rows


def _clock(start: datetime) -> Iterator[datetime]:
    t = start
    while True:
        yield t
        t += timedelta(minutes=1)


def _index(n: int, seed: int = 0, **params: int) -> FaissIndex:
    index = FaissIndex(DIM, **params)  # type: ignore[arg-type]
    index.add([f"i{k}" for k in range(n)], unit_rows(np.random.default_rng(seed), n))
    return index


def _store(root: Path, keep: int = 3) -> IndexStore:
    ticks = _clock(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    return IndexStore(root, keep=keep, clock=lambda: next(ticks))


def test_write_load_and_manifest(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.latest() is None
    index = _index(30, hnsw_threshold=10)

    version = store.write(index, "minilm")

    assert store.latest() == version == "v000001"
    manifest = json.loads((tmp_path / version / "manifest.json").read_text())
    assert manifest == {
        "version": version,
        "model_id": "minilm",
        "dimension": DIM,
        "count": 30,
        "kind": "hnsw",
        "params": index.params,
        "built_at": "2026-01-02T03:04:05+00:00",
    }
    loaded = store.load(version, model_id="minilm", dimension=DIM)
    assert loaded.kind == "hnsw" and sorted(loaded.ids()) == sorted(index.ids())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_load_checks_model_and_dimension(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.write(_index(5), "minilm")
    with pytest.raises(IndexMismatch):
        store.load(model_id="other-model")
    with pytest.raises(IndexMismatch):
        store.load(model_id="minilm", dimension=DIM * 2)
    assert len(store.load(model_id="minilm", dimension=DIM)) == 5


def test_keeps_the_newest_versions_and_latest_is_newest(tmp_path: Path) -> None:
    store = _store(tmp_path, keep=2)
    written = [store.write(_index(n + 1), "m") for n in range(4)]
    assert store.versions() == written[2:]
    assert store.latest() == written[3]
    assert len(store.load()) == 4


def test_same_clock_tick_gets_distinct_sorted_versions(tmp_path: Path) -> None:
    fixed = datetime(2026, 5, 6, tzinfo=UTC)
    store = IndexStore(tmp_path, clock=lambda: fixed)
    a, b = store.write(_index(1), "m"), store.write(_index(2), "m")
    assert a != b and store.latest() == b


def test_incomplete_versions_are_invisible(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / "v000099").mkdir()  # no manifest: a partial copy
    assert store.latest() is None
    with pytest.raises(ArtifactError):
        store.load()
    with pytest.raises(ArtifactError):
        store.load("v000099")


def test_failed_write_leaves_no_version(tmp_path: Path) -> None:
    class Broken(FaissIndex):
        def save(self, directory: Path) -> None:
            raise OSError("disk full")

    store = _store(tmp_path)
    broken = Broken(DIM)
    with pytest.raises(OSError):
        store.write(broken, "m")
    assert store.versions() == [] and list(tmp_path.iterdir()) == []


def test_holder_swaps_without_failing_readers() -> None:
    old, new = _index(50, seed=1), _index(50, seed=2)
    holder: IndexHolder[FaissIndex] = IndexHolder(old, "v1")
    query = unit_rows(np.random.default_rng(9), 1)
    errors: list[BaseException] = []
    seen: set[str | None] = set()
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                index, version = holder.snapshot()
                assert index is not None
                got, _ = index.search(query, 3)
                assert len(got[0]) == 3
                seen.add(version)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(20):
        previous = holder.swap(new if n % 2 == 0 else old, "v2" if n % 2 == 0 else "v1")
        assert previous is not None
    stop.set()
    for t in threads:
        t.join()

    assert not errors, errors[0]
    assert holder.get() is old and holder.version == "v1"
    assert seen  # readers ran


def test_empty_holder_raises() -> None:
    with pytest.raises(ArtifactError):
        IndexHolder[FaissIndex]().get()

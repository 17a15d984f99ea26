"""Several processes opening one new SQLite store at once (a gateway and `tailor worker`, two
servers started together) all get a migrated store: none fails on the WAL switch or on a
migration another process applied meanwhile."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from storage import open_store
from storage.migrations import MIGRATIONS


def _open(path: str, results: multiprocessing.Queue[str]) -> None:
    try:
        store = open_store(Path(path))
        results.put(str(store.schema_version))
        store.close()
    except Exception as exc:
        results.put(repr(exc))


def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(8):
        path = str(tmp_path / f"r{round_}.db")
        results: multiprocessing.Queue[str] = ctx.Queue()
        procs = [ctx.Process(target=_open, args=(path, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [results.get(timeout=5) for _ in procs] == [str(len(MIGRATIONS))] * 4

"""`SQLiteStore.close()` while other threads read: a reader in the middle of a query is never
closed under it (that can crash the process); each thread's reader is closed by that thread on
its next use, which answers "store is closed", or when the thread ends."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from storage.sqlite import SQLiteStore

SLOW_COUNT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*) FROM c"
)


def test_close_during_another_threads_query_lets_it_finish(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    started, closed = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def read() -> None:
        conn = store._reader()
        started.set()
        outcome["count"] = conn.execute(SLOW_COUNT).fetchone()[0]
        closed.wait(10)
        try:
            store.count_events()
        except sqlite3.ProgrammingError as exc:
            outcome["after"] = str(exc)
        outcome["own_closed"] = _is_closed(conn)

    t = threading.Thread(target=read)
    t.start()
    assert started.wait(10)
    time.sleep(0.05)  # the query is running in the other thread
    store.close()
    closed.set()
    t.join(30)
    assert not t.is_alive()
    assert outcome == {"count": 3000000, "after": "store is closed", "own_closed": True}


def test_close_closes_its_own_and_ended_threads_readers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    mine = store._reader()
    theirs: list[sqlite3.Connection] = []
    t = threading.Thread(target=lambda: theirs.append(store._reader()))
    t.start()
    t.join()
    store.close()
    assert _is_closed(mine) and _is_closed(theirs[0])
    with pytest.raises(sqlite3.ProgrammingError, match="store is closed"):
        store.count_events()


def _is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False

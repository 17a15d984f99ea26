from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage import open_store
from storage.migrations import MIGRATIONS
from storage.types import ItemRecord, SchemaError, UserRecord


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db")
    assert store.schema_version == len(MIGRATIONS)
    mode = sqlite3.connect(tmp_path / "t.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()
    again = open_store(tmp_path / "t.db")  # migrations are not re-applied
    assert again.schema_version == len(MIGRATIONS)


def test_newer_database_is_refused(tmp_path: Path) -> None:
    open_store(tmp_path / "t.db").close()
    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(SchemaError, match="newer than this code"):
        open_store(tmp_path / "t.db")


def test_items_and_users_round_trip(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db")
    store.upsert_items(
        [ItemRecord("a", "A", categories=("x", "y"), attributes={"k": 1}, price=2.5)]
    )
    store.upsert_users([UserRecord("u", {"tier": "gold"}, consent_personalization=False)])
    item = store.get_items(["a", "missing"])
    assert (
        list(item) == ["a"]
        and item["a"].categories == ("x", "y")
        and item["a"].attributes == {"k": 1}
    )
    user = store.get_user("u")
    assert user is not None and user.traits == {"tier": "gold"} and not user.consent_personalization
    assert store.get_user("nobody") is None


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db")

    def boom(_accepted):  # type: ignore[no-untyped-def]
        raise RuntimeError("profile update failed")

    from storage.types import EventRecord

    ev = EventRecord("m1", "view", "u1", 1.0, 1.0, "h", user_id="u1", item_id="i1")
    with pytest.raises(RuntimeError):
        store.insert_events([ev], boom)
    assert store.count_events() == 0
    assert store.insert_events([ev]) == ["accepted"]

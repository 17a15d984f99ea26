"""`tailor migrate` on SQLite and PostgreSQL, and `--copy-from-sqlite` into PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.main import main
from storage import open_store
from storage.migrations import MIGRATIONS
from storage.privacy import ApiKeyRow, ErasureRow, erase_subject, insert_api_key, list_api_keys
from storage.types import EventRecord, ItemRecord, UserRecord
from tests.pg import create_database, database_url, drop_database

LATEST = len(MIGRATIONS)


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    """An empty database (no schema yet) of this test's own."""
    name = create_database("tailor_test_migrate_")
    try:
        yield database_url(name)
    finally:
        drop_database(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long lines on stderr


def fill_sqlite(data_dir: Path) -> None:
    store = open_store(data_dir / "tailor.db")
    try:
        store.upsert_items([ItemRecord(f"i{k}", f"Item {k}", categories=("c",)) for k in range(5)])
        store.upsert_users([UserRecord("u1", {"tier": "gold"}), UserRecord("gone")])
        events = [
            EventRecord(
                f"m{k}",
                "view",
                f"u{k % 3}",
                100.0 + k,
                100.0 + k,
                "h",
                user_id=f"u{k % 3}",
                item_id=f"i{k % 5}",
            )
            for k in range(30)
        ]
        events.append(
            EventRecord(
                "v-anon", "view", "anon:a1", 90.0, 90.0, "h", anonymous_id="a1", item_id="i1"
            )
        )
        events.append(
            EventRecord("id1", "identify", "u1", 200.0, 200.0, "h", user_id="u1", anonymous_id="a1")
        )
        store.insert_events(
            events, lambda acc: {e.profile_key: {"last": e.message_id} for e in acc}
        )
        store.set_meta("demo_world", "p")
        store.put_persisted_queries([("abc", "{ trending { id } }", None)])
        insert_api_key(store, ApiKeyRow("k1", "ci", ("admin",), "secret-hash", 1.0))
        erase_subject(store, "gone", record=ErasureRow(0, "digest", "sealed", 50.0))
    finally:
        store.close()


def test_migrate_sqlite_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "migrate", "--data-dir", str(tmp_path / "var"))
    assert code == 0 and out.strip() == str(LATEST)
    assert f"applied {LATEST} migration(s)" in err and "tailor.db" in err
    code, out, err = run(capsys, "migrate", "--data-dir", str(tmp_path / "var"))
    assert code == 0 and out.strip() == str(LATEST) and "already up to date" in err


def test_migrate_postgres_is_idempotent(fresh_pg: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "migrate", "--database-url", fresh_pg)
    assert code == 0 and out.strip() == str(LATEST) and f"applied {LATEST} migration(s)" in err
    code, out, err = run(capsys, "migrate", "--database-url", fresh_pg)
    assert code == 0 and "already up to date" in err


def test_migrate_reports_an_unreachable_or_wrong_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(
        capsys, "migrate", "--database-url", "postgresql://postgres:pw@127.0.0.1:1/tailor"
    )
    assert code == 2 and "cannot connect to PostgreSQL" in err and "pw@" not in err
    code, _out, err = run(capsys, "migrate", "--database-url", "mysql://x@127.0.0.1/db")
    assert code == 2 and "database_url" in err and "postgresql://" in err


def test_copy_from_sqlite_moves_every_row_once(
    tmp_path: Path, fresh_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "var"
    fill_sqlite(data)
    source = open_store(data / "tailor.db")
    code, _out, err = run(
        capsys, "migrate", "--database-url", fresh_pg, "--copy-from-sqlite", str(data)
    )
    assert code == 0, err
    assert "events: 32 rows" in err and "items: 5 rows" in err and "erasures: 1 rows" in err
    assert "copied" in err and "row counts verified" in err
    target = open_store(fresh_pg)
    try:
        assert list(target.iter_events()) == list(source.iter_events())
        assert list(target.iter_items()) == list(source.iter_items())
        assert target.get_user("u1") == source.get_user("u1") and target.get_user("gone") is None
        keys = sorted(source.iter_profile_keys())
        assert target.get_profile_states(keys) == source.get_profile_states(keys)
        assert target.get_profile_versions(keys) == source.get_profile_versions(keys)
        assert target.resolve_identity("a1") == "u1"
        assert target.get_meta("demo_world") == "p" and target.get_persisted_query("abc")
        assert [k.id for k in list_api_keys(target)] == ["k1"]
        # New rows continue after the copied sequence numbers.
        new = EventRecord("new", "view", "u1", 300.0, 300.0, "h", user_id="u1", item_id="i1")
        assert target.insert_events([new]) == ["accepted"]
        assert target.count_events() == 33
        erase_subject(target, "u2", record=ErasureRow(0, "d2", "s2", 60.0))
    finally:
        target.close()
        source.close()

    # A second copy refuses the non-empty target and changes nothing ...
    code, _out, err = run(
        capsys, "migrate", "--database-url", fresh_pg, "--copy-from-sqlite", str(data)
    )
    assert code == 2 and "is not empty" in err and "--replace" in err
    check = open_store(fresh_pg)
    assert check.count_events() == 33 - 10  # u2's 10 events were erased above
    check.close()
    # ... unless told to replace what it holds.
    code, _out, err = run(
        capsys,
        "migrate",
        "--database-url",
        fresh_pg,
        "--copy-from-sqlite",
        str(data / "tailor.db"),
        "--replace",
    )
    assert code == 0 and "deleted the rows the target held first" in err
    check = open_store(fresh_pg)
    assert check.count_events() == 32
    check.close()


def test_copy_needs_a_postgres_target_and_a_source(
    tmp_path: Path, fresh_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(
        capsys, "migrate", "--data-dir", str(tmp_path), "--copy-from-sqlite", str(tmp_path)
    )
    assert code == 2 and "TAILOR_DATABASE_URL" in err
    code, _out, err = run(
        capsys, "migrate", "--database-url", fresh_pg, "--copy-from-sqlite", str(tmp_path / "no")
    )
    assert code == 2 and "no SQLite store at" in err

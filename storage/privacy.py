"""Privacy operations on any store: erasure (and its log), retention, and API-key rows.

Kept apart from the backends' general read/write paths because these operations share one
concern: data must be *gone* afterwards, not merely unreachable. Each function takes a
:class:`storage.types.Store` and runs the backend's own way of doing it (the SQLite code is
here; PostgreSQL's lives in ``storage/postgres.py``), so callers never know the backend.

SQLite keeps deleted rows in free pages and old page images in the WAL, so erasure turns on
``secure_delete`` (deleted content is overwritten with zeros) and checkpoints the WAL with
``TRUNCATE`` so no frame holding the old pages survives on disk. PostgreSQL deletes the rows in
one transaction; dead tuples leave the table files at the next (auto)vacuum (docs/POSTGRES.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from storage.types import ApiKeyRow, ErasureRow, Store, anonymous_key

__all__ = [
    "ApiKeyRow",
    "ErasureRow",
    "checkpoint",
    "erase_subject",
    "erasures_since",
    "get_api_key",
    "insert_api_key",
    "linked_anonymous_ids",
    "list_api_keys",
    "prune_events_before",
    "revoke_api_key",
    "vacuum",
]


def _sqlite(store: Store) -> SQLiteStore:
    if not isinstance(store, SQLiteStore):
        raise TypeError(f"unsupported store backend: {type(store).__name__}")
    return store


def erase_subject(
    store: Store,
    user_id: str,
    *,
    record: ErasureRow | None = None,
    log_kept_since: float | None = None,
) -> dict[str, int]:
    """Delete a user, their linked anonymous ids' data, events, identities and profiles.

    ``record`` is added to the erasure log in the same transaction (so every running gateway
    learns of the erasure exactly when it is durable), and log rows older than
    ``log_kept_since`` are dropped. Returns rows deleted per table (the log is not counted).
    One transaction; then the WAL is checkpointed (truncated).
    """
    if isinstance(store, PostgresStore):
        return store.erase_subject(user_id, record=record, log_kept_since=log_kept_since)
    lite = _sqlite(store)

    def write(conn: sqlite3.Connection) -> dict[str, int]:
        if record is not None:
            conn.execute(
                "INSERT INTO erasures(subject, sealed, erased_at) VALUES (?,?,?)",
                (record.subject, record.sealed, record.erased_at),
            )
        if log_kept_since is not None:
            conn.execute("DELETE FROM erasures WHERE erased_at < ?", (log_kept_since,))
        anon_ids = [
            r[0]
            for r in conn.execute("SELECT anonymous_id FROM identities WHERE user_id=?", (user_id,))
        ]
        keys = [user_id, *(anonymous_key(a) for a in anon_ids)]
        counts: dict[str, int] = {}
        counts["events"] = _delete_in(
            conn,
            "events",
            [("profile_key", keys), ("user_id", [user_id]), ("anonymous_id", anon_ids)],
        )
        counts["profiles"] = _delete_in(conn, "profiles", [("profile_key", keys)])
        counts["identities"] = _delete_in(conn, "identities", [("user_id", [user_id])])
        counts["users"] = _delete_in(conn, "users", [("id", [user_id])])
        return counts

    with lite._write_lock:
        _secure_delete(lite)
        counts: dict[str, int] = lite._transaction(write)
        checkpoint(lite)
    return counts


def erasures_since(
    store: Store, after_seq: int, *, not_before: float = 0.0
) -> tuple[int, list[ErasureRow]]:
    """(the log's newest seq, the rows after ``after_seq`` up to it with ``erased_at >=
    not_before``): the caller's next cursor is the returned seq, so no row is skipped."""
    if isinstance(store, PostgresStore):
        return store.erasures_since(after_seq, not_before=not_before)
    conn = _sqlite(store)._reader()
    top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM erasures").fetchone()[0])
    rows = conn.execute(
        "SELECT seq, subject, sealed, erased_at FROM erasures "
        "WHERE seq > ? AND seq <= ? AND erased_at >= ? ORDER BY seq",
        (after_seq, top, not_before),
    ).fetchall()
    return max(top, after_seq), [
        ErasureRow(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows
    ]


def _delete_in(conn: sqlite3.Connection, table: str, columns: list[tuple[str, list[str]]]) -> int:
    clauses, params = [], []
    for column, values in columns:
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    if not clauses:
        return 0
    cur = conn.execute(f"DELETE FROM {table} WHERE {' OR '.join(clauses)}", params)
    return int(cur.rowcount)


def _secure_delete(store: SQLiteStore) -> None:
    # Per connection and sticky: every later delete on the writer zeroes its content too.
    store._writer.execute("PRAGMA secure_delete=ON")


def linked_anonymous_ids(store: Store, user_id: str) -> list[str]:
    """The anonymous ids linked to ``user_id`` (by accepted identify events)."""
    if isinstance(store, PostgresStore):
        return store.linked_anonymous_ids(user_id)
    rows = (
        _sqlite(store)
        ._reader()
        .execute("SELECT anonymous_id FROM identities WHERE user_id=?", (user_id,))
    )
    return [str(r[0]) for r in rows]


def checkpoint(store: SQLiteStore) -> None:
    """Copy the WAL into the database file and truncate it (old page images leave the disk)."""
    with store._write_lock:
        store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def vacuum(store: Store) -> None:
    """SQLite: rebuild the database file (drops free pages entirely; slow on big files).
    PostgreSQL: ``VACUUM`` the tables holding personal data."""
    if isinstance(store, PostgresStore):
        store.vacuum()
        return
    store = _sqlite(store)
    with store._write_lock:
        store._writer.execute("VACUUM")
        store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def prune_events_before(store: Store, before_ts: float) -> dict[str, int]:
    """Delete events with ``ts < before_ts`` and the profiles left without any event.

    Returns ``{"events": n, "profiles": m}``. Profiles of people who still have events are
    kept (they are rebuilt from the log by ``tailor profiles rebuild`` if exact windows matter).
    """
    if isinstance(store, PostgresStore):
        return store.prune_events_before(before_ts)
    lite = _sqlite(store)

    def write(conn: sqlite3.Connection) -> dict[str, int]:
        events = conn.execute("DELETE FROM events WHERE ts < ?", (before_ts,)).rowcount
        profiles = conn.execute(
            "DELETE FROM profiles WHERE profile_key NOT IN (SELECT DISTINCT profile_key FROM events)"
        ).rowcount
        return {"events": int(events), "profiles": int(profiles)}

    with lite._write_lock:
        _secure_delete(lite)
        counts: dict[str, int] = lite._transaction(write)
        checkpoint(lite)
    return counts


# ---------------------------------------------------------------------- API keys
def insert_api_key(store: Store, row: ApiKeyRow) -> None:
    if isinstance(store, PostgresStore):
        store.insert_api_key(row)
        return
    _sqlite(store)._transaction(
        lambda conn: conn.execute(
            "INSERT INTO api_keys(id,name,scopes,secret_hash,created_at,revoked_at) "
            "VALUES (?,?,?,?,?,?)",
            (
                row.id,
                row.name,
                " ".join(row.scopes),
                row.secret_hash,
                row.created_at,
                row.revoked_at,
            ),
        )
    )


def revoke_api_key(store: Store, key_id: str, now: float) -> bool:
    """Mark a key revoked; False when no active key has this id."""
    if isinstance(store, PostgresStore):
        return store.revoke_api_key(key_id, now)

    def write(conn: sqlite3.Connection) -> int:
        return int(
            conn.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (now, key_id)
            ).rowcount
        )

    return bool(_sqlite(store)._transaction(write))


def get_api_key(store: Store, key_id: str) -> ApiKeyRow | None:
    if isinstance(store, PostgresStore):
        found = store.api_key_rows(key_id)
        return _key(found[0]) if found else None
    row = (
        _sqlite(store)
        ._reader()
        .execute(
            "SELECT id,name,scopes,secret_hash,created_at,revoked_at FROM api_keys WHERE id=?",
            (key_id,),
        )
        .fetchone()
    )
    return None if row is None else _key(row)


def list_api_keys(store: Store) -> list[ApiKeyRow]:
    if isinstance(store, PostgresStore):
        return [_key(r) for r in store.api_key_rows()]
    rows = (
        _sqlite(store)
        ._reader()
        .execute(
            "SELECT id,name,scopes,secret_hash,created_at,revoked_at FROM api_keys ORDER BY created_at"
        )
    )
    return [_key(r) for r in rows]


def _key(row: Sequence[object]) -> ApiKeyRow:
    return ApiKeyRow(
        id=str(row[0]),
        name=str(row[1]),
        scopes=tuple(str(row[2]).split()),
        secret_hash=str(row[3]),
        created_at=float(row[4]),  # type: ignore[arg-type]
        revoked_at=None if row[5] is None else float(row[5]),  # type: ignore[arg-type]
    )

"""Privacy operations on the SQLite store: erasure (and its log), retention, and API-key rows.

Kept apart from ``storage/sqlite.py`` (which owns the general read/write paths) because these
operations share one concern: data must be *gone* afterwards, not merely unreachable. SQLite
keeps deleted rows in free pages and old page images in the WAL, so erasure turns on
``secure_delete`` (deleted content is overwritten with zeros) and checkpoints the WAL with
``TRUNCATE`` so no frame holding the old pages survives on disk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage.sqlite import SQLiteStore
from storage.types import anonymous_key


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key as stored: ``secret_hash`` is the SHA-256 hex of the secret part."""

    id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ErasureRow:
    """One erasure in the log (``seq`` is 0 before it is written).

    ``subject`` is a keyed digest of the user id and ``sealed`` the encrypted profile keys: the
    log names nobody in clear (``profiles/privacy.py`` makes and reads both)."""

    seq: int
    subject: str
    sealed: str
    erased_at: float


def erase_subject(
    store: SQLiteStore,
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

    with store._write_lock:
        _secure_delete(store)
        counts: dict[str, int] = store._transaction(write)
        checkpoint(store)
    return counts


def erasures_since(
    store: SQLiteStore, after_seq: int, *, not_before: float = 0.0
) -> tuple[int, list[ErasureRow]]:
    """(the log's newest seq, the rows after ``after_seq`` up to it with ``erased_at >=
    not_before``): the caller's next cursor is the returned seq, so no row is skipped."""
    conn = store._reader()
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


def checkpoint(store: SQLiteStore) -> None:
    """Copy the WAL into the database file and truncate it (old page images leave the disk)."""
    with store._write_lock:
        store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def vacuum(store: SQLiteStore) -> None:
    """Rebuild the database file (drops free pages entirely; slow on big files)."""
    with store._write_lock:
        store._writer.execute("VACUUM")
        store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def prune_events_before(store: SQLiteStore, before_ts: float) -> dict[str, int]:
    """Delete events with ``ts < before_ts`` and the profiles left without any event.

    Returns ``{"events": n, "profiles": m}``. Profiles of people who still have events are
    kept (they are rebuilt from the log by ``tailor profiles rebuild`` if exact windows matter).
    """

    def write(conn: sqlite3.Connection) -> dict[str, int]:
        events = conn.execute("DELETE FROM events WHERE ts < ?", (before_ts,)).rowcount
        profiles = conn.execute(
            "DELETE FROM profiles WHERE profile_key NOT IN (SELECT DISTINCT profile_key FROM events)"
        ).rowcount
        return {"events": int(events), "profiles": int(profiles)}

    with store._write_lock:
        _secure_delete(store)
        counts: dict[str, int] = store._transaction(write)
        checkpoint(store)
    return counts


# ---------------------------------------------------------------------- API keys
def insert_api_key(store: SQLiteStore, row: ApiKeyRow) -> None:
    store._transaction(
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


def revoke_api_key(store: SQLiteStore, key_id: str, now: float) -> bool:
    """Mark a key revoked; False when no active key has this id."""

    def write(conn: sqlite3.Connection) -> int:
        return int(
            conn.execute(
                "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (now, key_id)
            ).rowcount
        )

    return bool(store._transaction(write))


def get_api_key(store: SQLiteStore, key_id: str) -> ApiKeyRow | None:
    row = (
        store._reader()
        .execute(
            "SELECT id,name,scopes,secret_hash,created_at,revoked_at FROM api_keys WHERE id=?",
            (key_id,),
        )
        .fetchone()
    )
    return None if row is None else _key(row)


def list_api_keys(store: SQLiteStore) -> list[ApiKeyRow]:
    rows = store._reader().execute(
        "SELECT id,name,scopes,secret_hash,created_at,revoked_at FROM api_keys ORDER BY created_at"
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

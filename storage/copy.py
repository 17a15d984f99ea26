"""Schema status and the one-way copy of an embedded SQLite store into PostgreSQL.

``tailor migrate`` uses both: :func:`stored_schema_version` tells how far a database is before
it is opened (opening migrates it), :func:`copy_sqlite_to_postgres` moves an existing data dir's
``tailor.db`` into the PostgreSQL system of record.

The copy is one PostgreSQL transaction: it commits whole or leaves the target as it was, so a
failed or interrupted copy is simply run again. The source is read in one SQLite read
transaction (a consistent snapshot even while a gateway writes to it). Rows keep their values,
event and erasure sequence numbers included; the identity sequences are moved past them.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from storage.postgres import TABLES, PostgresStore, redact
from storage.sqlite import SQLiteStore
from storage.types import StorageError, Store, StoreUnavailable


class TargetNotEmpty(StorageError):
    """The PostgreSQL database already holds rows (the copy refuses unless told to replace)."""


@dataclass
class CopyReport:
    """What a copy moved: rows per table (equal in source and target, verified)."""

    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)  # rows the target held before
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def stored_schema_version(target: str | Path) -> int:
    """The schema version a database is at now, without migrating it (0: none yet)."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        try:
            with psycopg.connect(target, connect_timeout=5) as conn:
                if conn.execute("SELECT to_regclass('tailor_schema')").fetchone() == (None,):
                    return 0
                row = conn.execute("SELECT version FROM tailor_schema").fetchone()
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {redact(target)} (TAILOR_DATABASE_URL): {reason}"
            ) from exc
        return 0 if row is None else int(row[0])
    path = Path(target)
    if not path.is_file():
        return 0
    lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(lite.execute("PRAGMA user_version").fetchone()[0])
    finally:
        lite.close()


def sqlite_file(path: str | Path) -> Path:
    """``path`` itself when it is a file, ``path/tailor.db`` when it is a data dir."""
    path = Path(path)
    found = path / "tailor.db" if path.is_dir() else path
    if not found.is_file():
        raise StorageError(f"no SQLite store at {found} (give a data dir or its tailor.db)")
    return found


def copy_sqlite_to_postgres(
    source: str | Path,
    target: Store,
    *,
    replace: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> CopyReport:
    """Copy every row of the SQLite store at ``source`` into ``target`` in one transaction.

    Refuses (:class:`TargetNotEmpty`) when the target holds any row, unless ``replace`` (then
    its rows are deleted in the same transaction). The source is first migrated to the current
    schema. Row counts are verified per table before the COMMIT; a mismatch rolls back.
    ``progress(table, rows)`` is called after each table.
    """
    started = time.monotonic()
    if not isinstance(target, PostgresStore):
        raise StorageError("the copy's target must be a PostgreSQL store (TAILOR_DATABASE_URL)")
    path = sqlite_file(source)
    SQLiteStore(path).close()  # bring the source to the current schema first
    report = CopyReport(str(path), redact(target.url))
    src = sqlite3.connect(path, isolation_level=None)
    try:
        src.execute("BEGIN")  # one snapshot of the source for the whole copy
        expected = {t: int(src.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in TABLES}

        def write(conn: psycopg.Connection[Any]) -> None:
            held = {}
            for table in TABLES:
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()
                if row is not None and row[0]:
                    held[table] = int(row[0])
            if held and not replace:
                listed = ", ".join(f"{t} {n}" for t, n in held.items())
                raise TargetNotEmpty(
                    f"{report.target} is not empty ({listed} rows); copy into an empty database, "
                    "or pass --replace to delete those rows first (in the same transaction)"
                )
            if held:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                        sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)
                    )
                )
                report.replaced = held
            for table in TABLES:
                report.rows[table] = _copy_table(src, conn, table, expected[table])
                if progress is not None:
                    progress(table, report.rows[table])
            for table in ("events", "erasures"):  # new rows continue after the copied ones
                conn.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({t}, 'seq'), "
                        "(SELECT coalesce(max(seq), 0) FROM {i}) + 1, false)"
                    ).format(t=sql.Literal(table), i=sql.Identifier(table))
                )

        target._transaction(write)
    finally:
        src.close()
    report.seconds = time.monotonic() - started
    return report


def _copy_table(
    src: sqlite3.Connection, conn: psycopg.Connection[Any], table: str, expected: int
) -> int:
    columns = [str(r[1]) for r in src.execute(f"PRAGMA table_info({table})")]
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
    cur = src.execute(f"SELECT {', '.join(columns)} FROM {table}")
    with conn.cursor() as pg, pg.copy(statement) as copy:
        while rows := cur.fetchmany(5000):
            for row in rows:
                copy.write_row(row)
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    copied = 0 if row is None else int(row[0])
    if copied != expected:
        raise StorageError(
            f"copy of {table} wrote {copied} rows, the source has {expected}: rolled back"
        )
    return copied

"""The PostgreSQL system of record: every store of :class:`storage.types.Store` over psycopg 3.

Selected by ``TAILOR_DATABASE_URL=postgresql://…`` (see :func:`storage.open_store`); the schema
is the one of ``storage/migrations.py``, rendered for PostgreSQL. Many gateway processes and hosts
may share one database.

Concurrency model:

- A :class:`psycopg_pool.ConnectionPool` (``min_size``..``max_size`` connections). Reads take a
  connection for one statement (autocommit); a write takes one for one transaction.
- Durability: ``synchronous_commit=on`` is forced on every connection, so a method that wrote
  returns only after its COMMIT is flushed to the server's WAL. A failed transaction is rolled
  back whole (``insert_events`` stores all of a group or nothing).
- Idempotency under concurrency: ``events.message_id`` is unique and events are inserted with
  ``ON CONFLICT DO NOTHING``; an insert that loses a race to another process's transaction with
  the same messageId reports ``duplicate``/``conflict``, like one that came second in time.
- Profiles written by several processes: ``insert_events`` takes a transaction-scoped advisory
  lock per profile key (in a fixed order, so two groups never deadlock), so two processes never
  derive a profile from the same old state. Profile versions grow strictly per profile across
  processes, so an in-memory state cache checked against them is never fooled.
- While a thread runs a write transaction, its reads go through that transaction's connection
  (the ingestion's profile update reads the states it is about to replace under those locks).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.experiments import PostgresExperimentRows
from storage.migrations import MIGRATIONS, statements
from storage.sqlite import (
    SQLiteStore,
    _dumps,
    classify_events,
    identity_joins,
    item_row,
    user_row,
)
from storage.types import (
    JSON,
    ApiKeyRow,
    ErasureRow,
    EventRecord,
    InsertOutcome,
    ItemRecord,
    SchemaError,
    StoreUnavailable,
    UserRecord,
    anonymous_key,
)

T = TypeVar("T")
ProfileUpdate = Callable[[list[EventRecord]], Mapping[str, JSON]]

# Every table of the schema, in an order that copies and truncates cleanly.
TABLES = (
    "items",
    "users",
    "events",
    "identities",
    "profiles",
    "meta",
    "persisted_queries",
    "api_keys",
    "erasures",
)
MIGRATION_LOCK = 0x7A11_0001  # advisory lock id: one migrating process at a time


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def _lock_id(key: str) -> int:
    """A stable signed 64-bit advisory-lock id for a profile key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def _last_per_key(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows deduplicated on their first column, the last one winning (as sequential upserts)."""
    return list({row[0]: row for row in rows}.values())


class PostgresStore(PostgresExperimentRows):
    """All stores of :class:`storage.types.Store` in one PostgreSQL database."""

    def __init__(
        self,
        url: str,
        *,
        traits_filter: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
    ) -> None:
        """Connect, apply pending migrations and open the pool.

        Raises :class:`StoreUnavailable` when the server cannot be reached or refuses the
        connection, :class:`SchemaError` when the database is newer than this code."""
        self.url = url
        self._traits_filter = traits_filter
        self._local = threading.local()
        self.last_profile_version = 0.0
        self._connect_timeout_s = connect_timeout_s
        self._migrate()
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=max(connect_timeout_s, 30.0),
            open=False,
            name="tailor",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreUnavailable(
                f"PostgreSQL at {redact(url)} (TAILOR_DATABASE_URL): no connection within "
                f"{connect_timeout_s:g} s"
            ) from exc

    # ------------------------------------------------------------------ connections
    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        # A COMMIT returns only once durable, whatever the server's default says.
        conn.execute("SET synchronous_commit = on")

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self._connect_timeout_s))
            )
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {redact(self.url)} (TAILOR_DATABASE_URL): "
                f"{reason}"
            ) from exc
        self._configure(conn)
        return conn

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """The running transaction's connection on this thread, else a pooled one."""
        tx: psycopg.Connection[Any] | None = getattr(self._local, "tx", None)
        if tx is not None:
            yield tx
            return
        with self._pool.connection() as conn:
            yield conn

    def _transaction(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in one transaction; returns after COMMIT, rolls back whole on any error."""
        tx: psycopg.Connection[Any] | None = getattr(self._local, "tx", None)
        if tx is not None:  # already inside one on this thread: join it
            return fn(tx)
        with self._pool.connection() as conn, conn.transaction():
            self._local.tx = conn
            try:
                return fn(conn)
            finally:
                self._local.tx = None

    def _read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run a read. Outside a transaction, when the server dropped a connection (a restart,
        a failover), the pool's idle connections are checked (broken ones replaced) and the read
        is retried once."""
        try:
            with self._conn() as conn:
                return fn(conn)
        except psycopg.OperationalError:
            if getattr(self._local, "tx", None) is not None:
                raise
            self._pool.check()
        with self._conn() as conn:
            return fn(conn)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._read(lambda conn: conn.execute(sql, params).fetchone())

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> bool:
        """True when the server answers within the connect timeout (``/readyz``)."""
        try:
            with self._pool.connection(timeout=self._connect_timeout_s) as conn:
                return conn.execute("SELECT 1").fetchone() is not None
        except (psycopg.Error, PoolTimeout):
            return False

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        with self._connect() as conn:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS tailor_schema (version INTEGER NOT NULL)"
                    )
                    row = conn.execute("SELECT version FROM tailor_schema").fetchone()
                    if row is None:
                        conn.execute("INSERT INTO tailor_schema(version) VALUES (0)")
                    version = 0 if row is None else int(row[0])
                    if version > len(MIGRATIONS):
                        raise SchemaError(
                            f"database {redact(self.url)} has schema version {version}, newer "
                            f"than this code ({len(MIGRATIONS)}); upgrade Tailor"
                        )
                    for number in range(version + 1, len(MIGRATIONS) + 1):
                        with conn.transaction():  # a savepoint: name the failed migration
                            try:
                                for statement in statements(number, "postgresql"):
                                    conn.execute(statement)
                            except psycopg.Error as exc:
                                raise SchemaError(f"migration {number} failed: {exc}") from exc
                        conn.execute("UPDATE tailor_schema SET version=%s", (number,))
            except psycopg.Error as exc:
                raise StoreUnavailable(
                    f"PostgreSQL at {redact(self.url)}: cannot read or migrate the schema: {exc}"
                ) from exc

    @property
    def schema_version(self) -> int:
        row = self._one("SELECT version FROM tailor_schema")
        return 0 if row is None else int(row[0])

    def row_counts(self) -> dict[str, int]:
        """Rows per table of the schema."""
        return {table: self._count(table) for table in TABLES}

    # ------------------------------------------------------------------ catalog
    _ITEM_COLS = SQLiteStore._ITEM_COLS

    def upsert_items(self, items: Sequence[ItemRecord]) -> int:
        rows = _last_per_key([item_row(it) for it in items])

        def write(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO items({self._ITEM_COLS}) VALUES "
                    "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT(id) DO UPDATE SET title=excluded.title,"
                    "description=excluded.description,categories=excluded.categories,"
                    "tags=excluded.tags,price=excluded.price,currency=excluded.currency,"
                    "available=excluded.available,attributes=excluded.attributes,"
                    "updated_at=excluded.updated_at",
                    rows,
                )
            return len(items)

        return self._transaction(write)

    def get_items(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        rows = self._all(
            f"SELECT {self._ITEM_COLS} FROM items WHERE id = ANY(%s)", (list(dict.fromkeys(ids)),)
        )
        return {row[0]: SQLiteStore._item(row) for row in rows}

    def iter_items(self) -> Iterator[ItemRecord]:
        for row in self._all(f'SELECT {self._ITEM_COLS} FROM items ORDER BY id COLLATE "C"'):
            yield SQLiteStore._item(row)

    def items_updated_since(self, since: float) -> list[ItemRecord]:
        """Items written after ``since`` (UTC epoch seconds), e.g. by another process."""
        rows = self._all(
            f"SELECT {self._ITEM_COLS} FROM items WHERE updated_at > %s ORDER BY updated_at",
            (since,),
        )
        return [SQLiteStore._item(row) for row in rows]

    def count_items(self) -> int:
        return self._count("items")

    def _count(self, table: str) -> int:
        row = self._one(f"SELECT count(*) FROM {table}")
        return 0 if row is None else int(row[0])

    # ------------------------------------------------------------------ users
    def upsert_users(self, users: Sequence[UserRecord]) -> int:
        rows = _last_per_key([user_row(u, self._traits_filter) for u in users])

        def write(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO users(id,traits,consent_personalization,consent_tracking,"
                    "updated_at) VALUES (%s,%s,%s,%s,%s) ON CONFLICT(id) DO UPDATE SET "
                    "traits=excluded.traits,consent_personalization=excluded."
                    "consent_personalization,consent_tracking=excluded.consent_tracking,"
                    "updated_at=excluded.updated_at",
                    rows,
                )
            return len(users)

        return self._transaction(write)

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._one(
            "SELECT id,traits,consent_personalization,consent_tracking,updated_at "
            "FROM users WHERE id=%s",
            (user_id,),
        )
        if row is None:
            return None
        return UserRecord(row[0], orjson.loads(row[1]), bool(row[2]), bool(row[3]), row[4])

    def get_users(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        rows = self._all(
            "SELECT id,traits,consent_personalization,consent_tracking,updated_at "
            "FROM users WHERE id = ANY(%s)",
            (list(dict.fromkeys(user_ids)),),
        )
        return {
            row[0]: UserRecord(row[0], orjson.loads(row[1]), bool(row[2]), bool(row[3]), row[4])
            for row in rows
        }

    def count_users(self) -> int:
        return self._count("users")

    # ------------------------------------------------------------------ events
    _EVENT_COLS = SQLiteStore._EVENT_COLS
    _EVENT_TYPES = (
        "text[]",
        "text[]",
        "text[]",
        "float8[]",
        "float8[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "text[]",
        "int[]",
    )

    def insert_events(
        self,
        events: Sequence[EventRecord],
        profile_update: ProfileUpdate | None = None,
    ) -> list[InsertOutcome]:
        def write(conn: psycopg.Connection[Any]) -> list[InsertOutcome]:
            keys: set[str] = set()
            for ev in events:
                keys.add(ev.profile_key)
                if ev.type == "identify" and ev.anonymous_id and ev.user_id:
                    keys.update((anonymous_key(ev.anonymous_id), ev.user_id))
            self._lock_profiles(conn, keys)
            ids = list({ev.message_id for ev in events})
            known: dict[str, str] = dict(
                conn.execute(
                    "SELECT message_id, payload_hash FROM events WHERE message_id = ANY(%s)",
                    (ids,),
                ).fetchall()
            )
            outcomes, accepted, position = classify_events(
                events, known, lambda aid: self._owner(conn, aid)
            )
            accepted = self._insert_new(conn, accepted, outcomes, position)
            joined = identity_joins(accepted)
            for anonymous_id, user_id, later in joined:
                self._link(conn, anonymous_id, user_id, later)
            # The update reads the profiles as they were before this group (as on SQLite,
            # whose update reads the last committed state), so the joined anonymous profiles
            # are dropped only after it ran; then the new states are written.
            states = profile_update(accepted) if accepted and profile_update is not None else {}
            if joined:
                conn.execute(
                    "DELETE FROM profiles WHERE profile_key = ANY(%s)",
                    ([anonymous_key(a) for a, _u, _later in joined],),
                )
            self._write_states(conn, states)
            return outcomes

        return self._transaction(write)

    def _insert_new(
        self,
        conn: psycopg.Connection[Any],
        accepted: list[EventRecord],
        outcomes: list[InsertOutcome],
        position: Mapping[str, int],
    ) -> list[EventRecord]:
        """Insert ``accepted`` in one statement; events whose messageId another transaction
        committed meanwhile are skipped and their outcomes corrected. Returns those inserted."""
        if not accepted:
            return accepted
        columns = list(
            zip(
                *(
                    (
                        ev.message_id,
                        ev.type,
                        ev.profile_key,
                        float(ev.ts),  # binary arrays hold one type: no int among floats
                        float(ev.received_at),
                        ev.payload_hash,
                        ev.user_id,
                        ev.anonymous_id,
                        ev.item_id,
                        ev.session_id,
                        ev.channel,
                        _dumps(dict(ev.properties)),
                        int(ev.flags),
                    )
                    for ev in accepted
                ),
                strict=True,
            )
        )
        arrays = ",".join(f"%b::{t}" for t in self._EVENT_TYPES)  # binary: no text escaping
        inserted = {
            row[0]
            for row in conn.execute(
                f"INSERT INTO events({self._EVENT_COLS}) SELECT * FROM unnest({arrays}) "
                "ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
                [list(c) for c in columns],
            )
        }
        if len(inserted) == len(accepted):
            return accepted
        raced = [ev for ev in accepted if ev.message_id not in inserted]
        stored = dict(
            conn.execute(
                "SELECT message_id, payload_hash FROM events WHERE message_id = ANY(%s)",
                ([ev.message_id for ev in raced],),
            ).fetchall()
        )
        for ev in raced:
            same = stored.get(ev.message_id) == ev.payload_hash
            outcomes[position[ev.message_id]] = "duplicate" if same else "conflict"
        return [ev for ev in accepted if ev.message_id in inserted]

    @staticmethod
    def _lock_profiles(conn: psycopg.Connection[Any], keys: set[str]) -> None:
        """Transaction-scoped advisory locks on these profiles, taken in one fixed order."""
        if keys:
            conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k",
                (sorted({_lock_id(k) for k in keys}),),
            )

    def iter_events(
        self, *, since: float | None = None, profile_key: str | None = None
    ) -> Iterator[EventRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("ts >= %s")
            params.append(since)
        if profile_key is not None:
            clauses.append("profile_key = %s")
            params.append(profile_key)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # A server-side cursor on a connection of its own: a long scan streams in batches.
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="tailor_iter_events") as cur,
        ):
            cur.itersize = 2000
            cur.execute(f"SELECT {self._EVENT_COLS} FROM events {where} ORDER BY ts, seq", params)
            for row in cur:
                yield SQLiteStore._event(row)

    def scan(
        self, sql: str, params: Sequence[Any] = (), batch: int = 2000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Batches of ``sql``'s rows through a server-side cursor (exports of big tables)."""
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="tailor_scan") as cur,
        ):
            cur.execute(sql, params)
            while rows := cur.fetchmany(batch):
                yield rows

    def count_events(self) -> int:
        return self._count("events")

    def newest_event_ts(self) -> float | None:
        row = self._one("SELECT max(ts) FROM events")
        return None if row is None or row[0] is None else float(row[0])

    def resolve_identity(self, anonymous_id: str) -> str | None:
        row = self._one("SELECT user_id FROM identities WHERE anonymous_id=%s", (anonymous_id,))
        return None if row is None else str(row[0])

    @staticmethod
    def _owner(conn: psycopg.Connection[Any], anonymous_id: str) -> str | None:
        row = conn.execute(
            "SELECT user_id FROM identities WHERE anonymous_id=%s", (anonymous_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _link(
        conn: psycopg.Connection[Any], anonymous_id: str, user_id: str, keep: Sequence[str] = ()
    ) -> None:
        """Link the id and re-key its events but ``keep`` (the batch's later anonymous-only
        ones: ``identity_joins``); ``insert_events`` drops its profile after the group's
        profile update ran."""
        conn.execute(
            "INSERT INTO identities(anonymous_id,user_id,linked_at) VALUES (%s,%s,%s) "
            "ON CONFLICT(anonymous_id) DO NOTHING",
            (anonymous_id, user_id, time.time()),
        )
        anon_key = anonymous_key(anonymous_id)
        conn.execute(
            "UPDATE events SET profile_key=%s WHERE profile_key=%s AND message_id <> ALL(%s)",
            (user_id, anon_key, list(keep)),
        )

    def linked_anonymous_ids(self, user_id: str) -> list[str]:
        """The anonymous ids linked to ``user_id``."""
        rows = self._all("SELECT anonymous_id FROM identities WHERE user_id=%s", (user_id,))
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ profiles
    def replace_profile_states(self, states: Mapping[str, JSON]) -> None:
        """Swap every stored profile for ``states`` in one transaction (used by rebuilds)."""

        def write(conn: psycopg.Connection[Any]) -> None:
            conn.execute("DELETE FROM profiles")
            self._write_states(conn, states)

        self._transaction(write)

    def _write_states(self, conn: psycopg.Connection[Any], states: Mapping[str, JSON]) -> None:
        if not states:
            return
        keys = list(states)
        # A fresh version per write, and above every version these profiles had: another
        # process's cached copy of one of them can never match the new version.
        row = conn.execute(
            "SELECT max(updated_at) FROM profiles WHERE profile_key = ANY(%s)", (keys,)
        ).fetchone()
        stored = 0.0 if row is None or row[0] is None else float(row[0])
        version = max(self.last_profile_version + 1.0, float(time.time_ns() // 1000), stored + 1.0)
        conn.execute(
            "INSERT INTO profiles(profile_key,state,updated_at) "
            "SELECT k, s, %s FROM unnest(%b::text[], %b::text[]) AS t(k, s) "
            "ON CONFLICT(profile_key) DO UPDATE SET state=excluded.state,"
            "updated_at=excluded.updated_at",
            (version, keys, [_dumps(states[k]) for k in keys]),
        )
        self.last_profile_version = version

    def get_profile_versions(self, keys: Sequence[str]) -> dict[str, float]:
        """The version (``updated_at``) of each stored profile among ``keys``."""
        rows = self._all(
            "SELECT profile_key, updated_at FROM profiles WHERE profile_key = ANY(%s)",
            (list(keys),),
        )
        return {str(k): float(v) for k, v in rows}

    def get_profile_states(self, keys: Sequence[str]) -> dict[str, JSON]:
        rows = self._all(
            "SELECT profile_key, state FROM profiles WHERE profile_key = ANY(%s)", (list(keys),)
        )
        return {str(k): orjson.loads(s) for k, s in rows}

    def get_profile_state(self, profile_key: str) -> JSON | None:
        row = self._one("SELECT state FROM profiles WHERE profile_key=%s", (profile_key,))
        return None if row is None else orjson.loads(row[0])

    def put_profile_states(self, states: Mapping[str, JSON]) -> None:
        self._transaction(lambda conn: self._write_states(conn, states))

    def delete_profile_state(self, profile_key: str) -> None:
        self._transaction(
            lambda conn: conn.execute("DELETE FROM profiles WHERE profile_key=%s", (profile_key,))
        )

    def iter_profile_keys(self) -> list[str]:
        return [r[0] for r in self._all("SELECT profile_key FROM profiles")]

    def event_profile_keys(self) -> list[str]:
        return [r[0] for r in self._all("SELECT DISTINCT profile_key FROM events")]

    # ------------------------------------------------------------------ key/value metadata
    def get_meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=%s", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._transaction(
            lambda conn: conn.execute(
                "INSERT INTO meta(key,value) VALUES (%s,%s) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
        )

    # ------------------------------------------------------------------ persisted queries
    def put_persisted_queries(self, rows: Sequence[tuple[str, str, str | None]]) -> int:
        """Register ``(sha256 hex, query, operation name)`` rows (re-registering is a no-op)."""
        if not rows:
            return 0
        hashes, queries, names = (list(c) for c in zip(*rows, strict=True))

        def write(conn: psycopg.Connection[Any]) -> int:
            cur = conn.execute(
                "INSERT INTO persisted_queries(sha256,query,name,registered_at) "
                "SELECT h, q, n, %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS t(h, q, n) "
                "ON CONFLICT(sha256) DO NOTHING",
                (time.time(), hashes, queries, names),
            )
            return max(cur.rowcount, 0)

        return self._transaction(write)

    def get_persisted_query(self, sha256: str) -> str | None:
        row = self._one("SELECT query FROM persisted_queries WHERE sha256=%s", (sha256,))
        return None if row is None else str(row[0])

    def count_persisted_queries(self) -> int:
        return self._count("persisted_queries")

    def list_persisted_queries(self) -> list[tuple[str, str, str | None]]:
        rows = self._all(
            "SELECT sha256, query, name FROM persisted_queries ORDER BY registered_at, sha256"
        )
        return [(str(h), str(q), None if n is None else str(n)) for h, q, n in rows]

    # ------------------------------------------------------------------ privacy (storage.privacy)
    def erase_subject(
        self, user_id: str, *, record: ErasureRow | None, log_kept_since: float | None
    ) -> dict[str, int]:
        """See :func:`storage.privacy.erase_subject`. Deleted rows leave the table files at the
        next (auto)vacuum; see docs/POSTGRES.md for what that means for backups and the WAL."""

        def write(conn: psycopg.Connection[Any]) -> dict[str, int]:
            if record is not None:
                # Erasures commit one at a time, so their seq order is their commit order and a
                # reader's cursor (erasures_since) never skips a row committed late.
                conn.execute("LOCK TABLE erasures IN SHARE ROW EXCLUSIVE MODE")
                conn.execute(
                    "INSERT INTO erasures(subject, sealed, erased_at) VALUES (%s,%s,%s)",
                    (record.subject, record.sealed, record.erased_at),
                )
            if log_kept_since is not None:
                conn.execute("DELETE FROM erasures WHERE erased_at < %s", (log_kept_since,))
            anon_ids = [
                str(r[0])
                for r in conn.execute(
                    "SELECT anonymous_id FROM identities WHERE user_id=%s", (user_id,)
                )
            ]
            keys = [user_id, *(anonymous_key(a) for a in anon_ids)]
            self._lock_profiles(conn, set(keys))  # no ingest group writes them meanwhile
            deletes = {
                "events": "DELETE FROM events WHERE profile_key = ANY(%s) OR user_id = %s "
                "OR anonymous_id = ANY(%s)",
                "profiles": "DELETE FROM profiles WHERE profile_key = ANY(%s)",
                "identities": "DELETE FROM identities WHERE user_id = %s",
                "users": "DELETE FROM users WHERE id = %s",
            }
            params: dict[str, tuple[Any, ...]] = {
                "events": (keys, user_id, anon_ids),
                "profiles": (keys,),
                "identities": (user_id,),
                "users": (user_id,),
            }
            return {
                table: int(conn.execute(sql, params[table]).rowcount)
                for table, sql in deletes.items()
            }

        return self._transaction(write)

    def erasures_since(
        self, after_seq: int, *, not_before: float = 0.0
    ) -> tuple[int, list[ErasureRow]]:
        """See :func:`storage.privacy.erasures_since`."""
        with self._conn() as conn, conn.transaction():
            top = int(conn.execute("SELECT coalesce(max(seq), 0) FROM erasures").fetchone()[0])  # type: ignore[index]
            rows = conn.execute(
                "SELECT seq, subject, sealed, erased_at FROM erasures "
                "WHERE seq > %s AND seq <= %s AND erased_at >= %s ORDER BY seq",
                (after_seq, top, not_before),
            ).fetchall()
        return max(top, after_seq), [
            ErasureRow(int(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows
        ]

    def prune_events_before(self, before_ts: float) -> dict[str, int]:
        """See :func:`storage.privacy.prune_events_before`."""

        def write(conn: psycopg.Connection[Any]) -> dict[str, int]:
            events = conn.execute("DELETE FROM events WHERE ts < %s", (before_ts,)).rowcount
            profiles = conn.execute(
                "DELETE FROM profiles p WHERE NOT EXISTS "
                "(SELECT 1 FROM events e WHERE e.profile_key = p.profile_key)"
            ).rowcount
            return {"events": int(events), "profiles": int(profiles)}

        return self._transaction(write)

    def vacuum(self) -> None:
        """``VACUUM`` the tables that hold personal data (dead rows leave the pages)."""
        with self._pool.connection() as conn:
            conn.execute("VACUUM events, profiles, identities, users, erasures")

    def insert_api_key(self, row: ApiKeyRow) -> None:
        self._transaction(
            lambda conn: conn.execute(
                "INSERT INTO api_keys(id,name,scopes,secret_hash,created_at,revoked_at) "
                "VALUES (%s,%s,%s,%s,%s,%s)",
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

    def revoke_api_key(self, key_id: str, now: float) -> bool:
        def write(conn: psycopg.Connection[Any]) -> int:
            return int(
                conn.execute(
                    "UPDATE api_keys SET revoked_at=%s WHERE id=%s AND revoked_at IS NULL",
                    (now, key_id),
                ).rowcount
            )

        return bool(self._transaction(write))

    def api_key_rows(self, key_id: str | None = None) -> list[tuple[Any, ...]]:
        """Raw API-key rows (one id, or all by creation time); see ``storage.privacy``."""
        cols = "id,name,scopes,secret_hash,created_at,revoked_at"
        if key_id is not None:
            return self._all(f"SELECT {cols} FROM api_keys WHERE id=%s", (key_id,))
        return self._all(f"SELECT {cols} FROM api_keys ORDER BY created_at")

    # ------------------------------------------------------------------ maintenance
    def truncate_all(self) -> None:
        """Delete every row of every table (tests and ``migrate --copy-from-sqlite --replace``)."""
        self._transaction(
            lambda conn: conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        )

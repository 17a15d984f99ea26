"""The embedded default store: one SQLite file in WAL mode, schema migrations applied at start-up.

Concurrency model: one writer connection guarded by a lock (SQLite allows a single writer anyway)
and one reader connection per thread, so reads never wait behind a write transaction (WAL).
The writer uses ``synchronous=FULL``: a committed transaction survives a process crash *and* a
power cut. Group commit (many requests' events in one transaction) is done by the ingestion
writer above this layer, so one fsync is paid per group, not per event.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from storage.experiments import ExperimentRows
from storage.migrations import MIGRATIONS
from storage.types import (
    JSON,
    EventRecord,
    InsertOutcome,
    ItemRecord,
    SchemaError,
    UserRecord,
    anonymous_key,
)

ProfileUpdate = Callable[[list[EventRecord]], Mapping[str, JSON]]


def _dumps(value: Any) -> str:
    return orjson.dumps(
        value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str
    ).decode()


def identity_joins(accepted: Sequence[EventRecord]) -> list[tuple[str, str, list[str]]]:
    """Each accepted identify of a batch, in order: (anonymous id, user id, the message ids of
    the batch's later events on that anonymous profile). The link re-keys only what came before
    it: after a merge, anonymous-only traffic with the id builds a fresh anonymous profile, in
    the same batch as in a later one (both backends)."""
    out: list[tuple[str, str, list[str]]] = []
    for i, ev in enumerate(accepted):
        if ev.type == "identify" and ev.anonymous_id and ev.user_id:
            anon = anonymous_key(ev.anonymous_id)
            later = [e.message_id for e in accepted[i + 1 :] if e.profile_key == anon]
            out.append((ev.anonymous_id, ev.user_id, later))
    return out


def classify_events(
    events: Sequence[EventRecord],
    known: dict[str, str],
    owner_of: Callable[[str], str | None],
) -> tuple[list[InsertOutcome], list[EventRecord], dict[str, int]]:
    """The outcome of each event of a batch, in order, for both backends: ``known`` maps the
    message ids already stored to their payload hash (updated with the batch's new ones: a
    repeat inside the batch is a duplicate); ``owner_of(anonymous id)`` is its linked user.
    Returns the outcomes, the accepted events, and each accepted id's position in outcomes."""
    outcomes: list[InsertOutcome] = []
    accepted: list[EventRecord] = []
    position: dict[str, int] = {}
    owners: dict[str, str | None] = {}  # anonymous id -> its user, as of this transaction
    for ev in events:
        stored_hash = known.get(ev.message_id)
        if stored_hash is not None:
            outcomes.append("duplicate" if stored_hash == ev.payload_hash else "conflict")
            continue
        if ev.type == "identify" and ev.anonymous_id and ev.user_id:
            aid = ev.anonymous_id
            if aid not in owners:
                owners[aid] = owner_of(aid)
            if owners[aid] not in (None, ev.user_id):
                outcomes.append("refused")  # a link never moves to another user
                continue
            owners[aid] = ev.user_id
        known[ev.message_id] = ev.payload_hash
        position[ev.message_id] = len(outcomes)
        outcomes.append("accepted")
        accepted.append(ev)
    return outcomes, accepted, position


def _event_values(events: Iterable[EventRecord]) -> list[Any]:
    """The ``events`` columns of every event, one flat list (row after row) for
    :func:`_insert_values`. The values are strings, numbers and None, which the garbage
    collector does not track: the list is one object to it, however long the group."""
    values: list[Any] = []
    add = values.extend
    for ev in events:
        props = ev.properties
        add(
            (
                ev.message_id,
                ev.type,
                ev.profile_key,
                ev.ts,
                ev.received_at,
                ev.payload_hash,
                ev.user_id,
                ev.anonymous_id,
                ev.item_id,
                ev.session_id,
                ev.channel,
                # Most events (views, clicks) carry no properties: no encoder call.
                _dumps(props if props.__class__ is dict else dict(props)) if props else "{}",
                ev.flags,
            )
        )
    return values


# Rows per INSERT statement in _insert_values (at most; fewer when SQLite allows fewer
# parameters). A smaller remainder goes in one multiple of 64 rows, then what is left below 64
# in power-of-two chunks: at most 16 + 6 statement sizes per statement head, so sqlite3's
# statement cache (128 per connection) keeps them all prepared.
_VALUES_CHUNK = 1024


def _insert_values(
    conn: sqlite3.Connection, head: str, tail: str, width: int, values: list[Any]
) -> int:
    """``executemany(head + " VALUES (?,…)" + tail, rows)`` for ``values`` (the rows' columns,
    flattened), with the rows changed as its result, in a few multi-row statements instead of
    one execution per row.

    The reason is the GIL, not SQLite: sqlite3 releases the GIL around every ``sqlite3_step``,
    so executemany gives it up once per row and must win it back each time from the event loop
    (validating the next requests), which keeps it for up to the switch interval (5 ms). In the
    gateway the writer's INSERT took ~24 µs of wall time per event for ~8 µs of CPU. A
    statement of 1,024 rows is one step: one hand-over for 1,024 rows. The rows are inserted
    in the same order, one at a time by SQLite, with the same conflict clause, so the table,
    the row ids and the count are what executemany gives. A group of 2,000 rows takes three
    statements (1,024, 960, 16); the sizes are few (see _VALUES_CHUNK), so each is prepared
    once and then cached by sqlite3 (preparing costs ~4-5 µs per row, more than inserting)."""
    rows = len(values) // width
    most = _VALUES_CHUNK
    while most > 1 and most * width > conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER):
        most //= 2
    changed = 0
    start = 0
    while rows:
        if rows >= most:
            k = most
        elif rows >= 64:
            k = rows - rows % 64
        else:
            k = 1 << (rows.bit_length() - 1)  # the largest power of two <= rows
        sql = _values_sql(head, tail, width, k)
        end = start + k * width
        changed += conn.execute(sql, values[start:end]).rowcount
        start, rows = end, rows - k
    return changed


_VALUES_SQL: dict[tuple[str, str, int, int], str] = {}


def _values_sql(head: str, tail: str, width: int, rows: int) -> str:
    key = (head, tail, width, rows)
    sql = _VALUES_SQL.get(key)
    if sql is None:
        row = "(" + ",".join("?" * width) + ")"
        sql = _VALUES_SQL[key] = f"{head} VALUES {','.join([row] * rows)} {tail}"
    return sql


def item_row(it: ItemRecord) -> tuple[Any, ...]:
    """An item as the columns of ``items`` (both backends write the same row)."""
    return (
        it.id,
        it.title,
        it.description,
        _dumps(list(it.categories)),
        _dumps(list(it.tags)),
        it.price,
        it.currency,
        int(it.available),
        _dumps(dict(it.attributes)),
        it.created_at,
        it.updated_at,
    )


def user_row(
    u: UserRecord, keep: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None
) -> tuple[Any, ...]:
    """A user as the columns of ``users``, traits through the store's ``traits_filter``."""
    return (
        u.id,
        _dumps(dict(keep(u.traits) if keep is not None else u.traits)),
        int(u.consent_personalization),
        int(u.consent_tracking),
        u.updated_at or time.time(),
    )


class SQLiteStore(ExperimentRows):
    """All stores of :class:`storage.types.Store` in one SQLite database file."""

    def __init__(
        self,
        path: str | Path,
        *,
        traits_filter: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        """``traits_filter``: applied to every user's traits before they are written (the
        gateway passes the PII hasher, so no configured PII trait reaches the disk in clear)."""
        self.path = Path(path)
        self._traits_filter = traits_filter
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._readers: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.last_profile_version = 0.0
        self._writer = self._connect()
        self._writer.execute("PRAGMA synchronous=FULL")
        self._migrate()

    # ------------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        # Switching a new file to WAL takes an exclusive lock that SQLite's busy handler does
        # not wait for: processes opening the same new store together retry it (bounded).
        for attempt in range(100):
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05)
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (one per thread, opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._closed:
            if self._closed:
                if conn is not None:  # left open by close(): this thread closes its own
                    self._local.conn = None
                    conn.close()
                raise sqlite3.ProgrammingError("store is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append((threading.current_thread(), conn))
        return conn

    def close(self) -> None:
        """Close the writer and the readers no other thread can be using.

        Another live thread's reader may be in the middle of a query, and closing a connection
        under a running statement can crash the process: it is left to that thread, which
        closes it on its next use of the store (which then fails: the store is closed), or
        when the thread ends (the thread-local connection is released with it).
        """
        self._closed = True
        me = threading.current_thread()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for owner, conn in readers:
            if owner is me or not owner.is_alive():
                conn.close()
        with self._write_lock:
            self._writer.close()

    def ping(self) -> bool:
        try:
            self._reader().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    def _migrate(self) -> None:
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise SchemaError(
                f"database {self.path} has schema version {version}, newer than this code "
                f"({len(MIGRATIONS)}); upgrade Tailor"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):

            def apply(conn: sqlite3.Connection, script: str = script, number: int = number) -> None:
                # Under the write lock (BEGIN IMMEDIATE): another process starting on the same
                # file (a gateway and `tailor worker`, two test servers) may have applied it
                # since the version was read above.
                if conn.execute("PRAGMA user_version").fetchone()[0] >= number:
                    return
                for statement in script.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")

            try:
                self._transaction(apply)
            except sqlite3.Error as exc:
                raise SchemaError(f"migration {number} failed: {exc}") from exc

    @property
    def schema_version(self) -> int:
        return int(self._reader().execute("PRAGMA user_version").fetchone()[0])

    # ------------------------------------------------------------------ catalog
    def upsert_items(self, items: Sequence[ItemRecord]) -> int:
        rows = [item_row(it) for it in items]

        def write(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO items(id,title,description,categories,tags,price,currency,available,"
                "attributes,created_at,updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET title=excluded.title,"
                "description=excluded.description,categories=excluded.categories,"
                "tags=excluded.tags,price=excluded.price,currency=excluded.currency,"
                "available=excluded.available,attributes=excluded.attributes,"
                "updated_at=excluded.updated_at",
                rows,
            )
            return len(rows)

        return int(self._transaction(write))

    _ITEM_COLS = (
        "id,title,description,categories,tags,price,currency,available,attributes,"
        "created_at,updated_at"
    )

    @staticmethod
    def _item(row: sqlite3.Row | tuple[Any, ...]) -> ItemRecord:
        return ItemRecord(
            id=row[0],
            title=row[1],
            description=row[2],
            categories=tuple(orjson.loads(row[3])),
            tags=tuple(orjson.loads(row[4])),
            price=row[5],
            currency=row[6],
            available=bool(row[7]),
            attributes=orjson.loads(row[8]),
            created_at=row[9],
            updated_at=row[10],
        )

    def _rows_in(self, sql: str, ids: Sequence[str]) -> Iterator[Any]:
        """The rows of ``sql`` (its ``{marks}`` is the IN list) for the distinct ``ids``, 500
        per statement (SQLite bounds the number of parameters)."""
        unique = list(dict.fromkeys(ids))
        conn = self._reader()
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            yield from conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()

    def get_items(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        sql = f"SELECT {self._ITEM_COLS} FROM items WHERE id IN ({{marks}})"
        return {row[0]: self._item(row) for row in self._rows_in(sql, ids)}

    def iter_items(self) -> Iterator[ItemRecord]:
        for row in self._reader().execute(f"SELECT {self._ITEM_COLS} FROM items ORDER BY id"):
            yield self._item(row)

    def items_updated_since(self, since: float) -> list[ItemRecord]:
        """Items written after ``since`` (UTC epoch seconds), e.g. by an import in another process."""
        rows = self._reader().execute(
            f"SELECT {self._ITEM_COLS} FROM items WHERE updated_at > ? ORDER BY updated_at",
            (since,),
        )
        return [self._item(row) for row in rows]

    def count_items(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM items").fetchone()[0])

    # ------------------------------------------------------------------ users
    def upsert_users(self, users: Sequence[UserRecord]) -> int:
        rows = [user_row(u, self._traits_filter) for u in users]

        def write(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO users(id,traits,consent_personalization,consent_tracking,updated_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET traits=excluded.traits,"
                "consent_personalization=excluded.consent_personalization,"
                "consent_tracking=excluded.consent_tracking,updated_at=excluded.updated_at",
                rows,
            )
            return len(rows)

        return int(self._transaction(write))

    def get_user(self, user_id: str) -> UserRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT id,traits,consent_personalization,consent_tracking,updated_at "
                "FROM users WHERE id=?",
                (user_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return UserRecord(row[0], orjson.loads(row[1]), bool(row[2]), bool(row[3]), row[4])

    def get_users(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        sql = (
            "SELECT id,traits,consent_personalization,consent_tracking,updated_at "
            "FROM users WHERE id IN ({marks})"
        )
        return {
            row[0]: UserRecord(row[0], orjson.loads(row[1]), bool(row[2]), bool(row[3]), row[4])
            for row in self._rows_in(sql, user_ids)
        }

    def count_users(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM users").fetchone()[0])

    # ------------------------------------------------------------------ events
    _EVENT_COLS = (
        "message_id,type,profile_key,ts,received_at,payload_hash,user_id,anonymous_id,item_id,"
        "session_id,channel,properties,flags"
    )

    @staticmethod
    def _event(row: tuple[Any, ...]) -> EventRecord:
        return EventRecord(
            message_id=row[0],
            type=row[1],
            profile_key=row[2],
            ts=row[3],
            received_at=row[4],
            payload_hash=row[5],
            user_id=row[6],
            anonymous_id=row[7],
            item_id=row[8],
            session_id=row[9],
            channel=row[10],
            properties=orjson.loads(row[11]),
            flags=row[12],
        )

    def insert_events(
        self,
        events: Sequence[EventRecord],
        profile_update: ProfileUpdate | None = None,
    ) -> list[InsertOutcome]:
        insert = f"INSERT INTO events({self._EVENT_COLS})"

        def write(conn: sqlite3.Connection) -> list[InsertOutcome]:
            if events and not any(ev.type == "identify" for ev in events):
                # The common group: no identify, and (usually) no id stored before. Insert it
                # all, skipping ids already there; if every row went in, every event is
                # accepted, which is what the lookup below would have answered, without it.
                conn.execute("SAVEPOINT new_events")
                added = _insert_values(
                    conn, insert, "ON CONFLICT(message_id) DO NOTHING", 13, _event_values(events)
                )
                if added == len(events):
                    conn.execute("RELEASE new_events")
                    accepted = list(events)
                    if profile_update is not None:
                        self._write_states(conn, profile_update(accepted))
                    return ["accepted"] * len(accepted)
                # A duplicate or a conflict among them: undo, and classify each event.
                conn.execute("ROLLBACK TO new_events")
                conn.execute("RELEASE new_events")
            # A few statements per group instead of one per event: look up the ids already
            # stored, then insert the new ones.
            known: dict[str, str] = {}
            ids = list({ev.message_id for ev in events})
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                known.update(
                    conn.execute(
                        f"SELECT message_id, payload_hash FROM events WHERE message_id IN ({marks})",
                        chunk,
                    ).fetchall()
                )
            outcomes, accepted, _position = classify_events(
                events, known, lambda aid: self._owner(conn, aid)
            )
            _insert_values(conn, insert, "", 13, _event_values(accepted))
            for anonymous_id, user_id, later in identity_joins(accepted):
                self._link(conn, anonymous_id, user_id, later)
            if accepted and profile_update is not None:
                self._write_states(conn, profile_update(accepted))
            return outcomes

        return list(self._transaction(write))

    def iter_events(
        self, *, since: float | None = None, profile_key: str | None = None
    ) -> Iterator[EventRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since)
        if profile_key is not None:
            clauses.append("profile_key = ?")
            params.append(profile_key)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # A dedicated connection: a long scan must not hold this thread's reader across yields.
        conn = self._connect()
        try:
            cur = conn.execute(
                f"SELECT {self._EVENT_COLS} FROM events {where} ORDER BY ts, seq", params
            )
            while rows := cur.fetchmany(2000):
                for row in rows:
                    yield self._event(row)
        finally:
            conn.close()

    def count_events(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM events").fetchone()[0])

    def newest_event_ts(self) -> float | None:
        row = self._reader().execute("SELECT max(ts) FROM events").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def resolve_identity(self, anonymous_id: str) -> str | None:
        row = (
            self._reader()
            .execute("SELECT user_id FROM identities WHERE anonymous_id=?", (anonymous_id,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    @staticmethod
    def _owner(conn: sqlite3.Connection, anonymous_id: str) -> str | None:
        row = conn.execute(
            "SELECT user_id FROM identities WHERE anonymous_id=?", (anonymous_id,)
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _link(
        conn: sqlite3.Connection, anonymous_id: str, user_id: str, keep: Sequence[str] = ()
    ) -> None:
        # Identity links commit in the same transaction as the identify event itself. A link
        # is never moved (insert_events refuses an identify of an id linked to another user).
        # ``keep``: the batch's events after the identify stay anonymous (identity_joins).
        conn.execute(
            "INSERT INTO identities(anonymous_id,user_id,linked_at) VALUES (?,?,?) "
            "ON CONFLICT(anonymous_id) DO NOTHING",
            (anonymous_id, user_id, time.time()),
        )
        anon_key = anonymous_key(anonymous_id)
        marks = ",".join("?" * len(keep))
        conn.execute(
            "UPDATE events SET profile_key=? WHERE profile_key=?"
            + (f" AND message_id NOT IN ({marks})" if keep else ""),
            (user_id, anon_key, *keep),
        )
        conn.execute("DELETE FROM profiles WHERE profile_key=?", (anon_key,))

    def replace_profile_states(self, states: Mapping[str, JSON]) -> None:
        """Swap every stored profile for ``states`` in one transaction (used by rebuilds)."""

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM profiles")
            self._write_states(conn, states)

        self._transaction(write)

    # ------------------------------------------------------------------ profiles
    def _write_states(self, conn: sqlite3.Connection, states: Mapping[str, JSON]) -> None:
        # Every write gets a fresh version number, so in-memory state caches can tell whether
        # another process changed a profile since they last saw it.
        version = max(self.last_profile_version + 1.0, float(time.time_ns() // 1000))
        values: list[Any] = []
        add = values.extend
        for key, state in states.items():
            add((key, _dumps(state), version))
        _insert_values(
            conn,
            "INSERT INTO profiles(profile_key,state,updated_at)",
            "ON CONFLICT(profile_key) DO UPDATE SET state=excluded.state,"
            "updated_at=excluded.updated_at",
            3,
            values,
        )
        self.last_profile_version = version

    def get_profile_versions(self, keys: Sequence[str]) -> dict[str, float]:
        """The version (``updated_at``) of each stored profile among ``keys``."""
        out: dict[str, float] = {}
        conn = self._reader()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out.update(
                conn.execute(
                    f"SELECT profile_key, updated_at FROM profiles WHERE profile_key IN ({marks})",
                    chunk,
                ).fetchall()
            )
        return out

    def get_profile_states(self, keys: Sequence[str]) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        conn = self._reader()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, state in conn.execute(
                f"SELECT profile_key, state FROM profiles WHERE profile_key IN ({marks})", chunk
            ):
                out[key] = orjson.loads(state)
        return out

    def get_profile_state(self, profile_key: str) -> JSON | None:
        row = (
            self._reader()
            .execute("SELECT state FROM profiles WHERE profile_key=?", (profile_key,))
            .fetchone()
        )
        return None if row is None else orjson.loads(row[0])

    def put_profile_states(self, states: Mapping[str, JSON]) -> None:
        self._transaction(lambda conn: self._write_states(conn, states))

    def delete_profile_state(self, profile_key: str) -> None:
        self._transaction(
            lambda conn: conn.execute("DELETE FROM profiles WHERE profile_key=?", (profile_key,))
        )

    def iter_profile_keys(self) -> list[str]:
        return [r[0] for r in self._reader().execute("SELECT profile_key FROM profiles")]

    def event_profile_keys(self) -> list[str]:
        return [r[0] for r in self._reader().execute("SELECT DISTINCT profile_key FROM events")]

    # ------------------------------------------------------------------ key/value metadata
    def get_meta(self, key: str) -> str | None:
        row = self._reader().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._transaction(
            lambda conn: conn.execute(
                "INSERT INTO meta(key,value) VALUES (?,?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )
        )

    # ------------------------------------------------------------------ persisted queries
    def put_persisted_queries(self, rows: Sequence[tuple[str, str, str | None]]) -> int:
        """Register ``(sha256 hex, query, operation name)`` rows (re-registering is a no-op)."""
        now = time.time()
        data = [(h, q, n, now) for h, q, n in rows]

        def write(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO persisted_queries(sha256,query,name,registered_at) VALUES (?,?,?,?) "
                "ON CONFLICT(sha256) DO NOTHING",
                data,
            )
            return conn.total_changes - before

        return int(self._transaction(write))

    def get_persisted_query(self, sha256: str) -> str | None:
        row = (
            self._reader()
            .execute("SELECT query FROM persisted_queries WHERE sha256=?", (sha256,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def count_persisted_queries(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM persisted_queries").fetchone()[0])

    def list_persisted_queries(self) -> list[tuple[str, str, str | None]]:
        """Every registered ``(sha256 hex, query, operation name)``, in registration order."""
        rows = (
            self._reader()
            .execute(
                "SELECT sha256, query, name FROM persisted_queries ORDER BY registered_at, sha256"
            )
            .fetchall()
        )
        return [(str(h), str(q), None if n is None else str(n)) for h, q, n in rows]

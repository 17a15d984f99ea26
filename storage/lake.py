"""The Parquet lake: the store's events, items, users and profile features as open files that a
warehouse (Spark, DuckDB, Snowflake, BigQuery, Hive) reads as they are. Schema: docs/LAKE.md.

Layout under the lake root::

    _tailor_lake.json                         the manifest (format, as_of, partitions written)
    events/event_date=YYYY-MM-DD/part-00000.parquet   one file per UTC day (Hive partitioning)
    items/part-00000.parquet                  the catalog at export time
    users/part-00000.parquet                  known users (traits as stored: PII already hashed)
    profiles/part-00000.parquet               profile features as of ``as_of``

Every file is written beside its final name (a dot-file, which readers skip) and renamed into
place, so a reader sees the old file or the new one, never half of one. Event partitions are
resumable: each written day's fingerprint (event count, sum of store sequence numbers,
anonymous-profile events) is recorded in the manifest (at least once a second, and when the
export ends or fails), and a later export of the same range skips the days whose fingerprint is
unchanged. A day changes when events arrive for it,
are erased or pruned, or when an identity link re-keys anonymous events to a user. An
interrupted export therefore resumes where it stopped, and a daily export rewrites only the days
that changed. ``overwrite`` rewrites every day of the range.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from storage.timeutil import iso
from storage.types import ANONYMOUS_PREFIX, StorageError, Store

LAKE_FORMAT = 1
MANIFEST = "_tailor_lake.json"
PART = "part-00000.parquet"
DAY = 86_400
TABLES = ("events", "items", "users", "profiles")
_BATCH_ROWS = 50_000
MANIFEST_EVERY_S = 1.0  # progress is recorded at least this often while days are written

UTC_TS = pa.timestamp("us", tz="UTC")
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("profile_key", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("channel", pa.string(), nullable=False),
        pa.field("ts", UTC_TS, nullable=False),
        pa.field("received_at", UTC_TS, nullable=False),
        pa.field("properties", pa.string(), nullable=False),
        pa.field("flags", pa.int32(), nullable=False),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
        pa.field("categories", pa.list_(pa.string()), nullable=False),
        pa.field("tags", pa.list_(pa.string()), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("available", pa.bool_(), nullable=False),
        pa.field("attributes", pa.string(), nullable=False),
        pa.field("created_at", UTC_TS, nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
    ]
)
USERS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("traits", pa.string(), nullable=False),
        pa.field("consent_personalization", pa.bool_(), nullable=False),
        pa.field("consent_tracking", pa.bool_(), nullable=False),
        pa.field("updated_at", UTC_TS, nullable=False),
    ]
)

#: ``(profile_key, {feature: value})`` rows of the profile-features table.
FeatureRows = Iterable[tuple[str, Mapping[str, float]]]


class LakeError(StorageError):
    """The lake directory cannot be written or read (bad manifest, another export running)."""


def profiles_schema(feature_names: Sequence[str]) -> pa.Schema:
    """``profile_key``, ``as_of`` and one float64 column per feature, in the given order."""
    return pa.schema(
        [
            pa.field("profile_key", pa.string(), nullable=False),
            pa.field("as_of", UTC_TS, nullable=False),
            *(pa.field(name, pa.float64(), nullable=False) for name in feature_names),
        ]
    )


def day_of(ts: float) -> int:
    """The UTC day number (days since 1970-01-01) of an epoch timestamp."""
    return int(ts // DAY)


def day_name(day: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=day)).isoformat()


def partition_dir(root: Path, day: int) -> Path:
    return root / "events" / f"event_date={day_name(day)}"


@dataclass
class LakeExport:
    """What one export did: rows and files written, partitions skipped as unchanged."""

    root: Path
    as_of: float
    events_written: int = 0
    partitions_written: list[str] = field(default_factory=list)
    partitions_skipped: list[str] = field(default_factory=list)
    partitions_removed: list[str] = field(default_factory=list)
    items: int = 0
    users: int = 0
    profiles: int = 0
    seconds: float = 0.0

    @property
    def rows_written(self) -> int:
        return self.events_written + self.items + self.users + self.profiles


def read_manifest(root: Path) -> dict[str, Any]:
    """The lake's manifest (an empty one for a new lake); ``LakeError`` if unreadable."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {"format": LAKE_FORMAT, "partitions": {}}
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LakeError(f"cannot read the lake manifest {path}: {exc}") from exc
    if doc.get("format") != LAKE_FORMAT:
        raise LakeError(
            f"{path} is lake format {doc.get('format')!r}; this Tailor writes format {LAKE_FORMAT}"
        )
    doc.setdefault("partitions", {})
    return doc


def _write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` a dot-file beside ``target``, fsync it, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _write_manifest(root: Path, doc: Mapping[str, Any]) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    _write_atomic(root / MANIFEST, write)


def _write_table(target: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    rows = 0

    def write(tmp: Path) -> None:
        nonlocal rows
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
                rows += batch.num_rows

    _write_atomic(target, write)
    return rows


def _micros(values: Sequence[float]) -> pa.Array:
    seconds = pa.array(values, type=pa.float64())
    return pc.round(pc.multiply(seconds, 1_000_000.0)).cast(pa.int64()).cast(UTC_TS)


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[None]:
    """One export per lake at a time (an advisory lock on ``<root>/.lock``)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeError(f"another export is writing the lake at {root}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LakeExporter:
    """Exports one store to one lake directory (see the module docstring)."""

    def __init__(self, store: Store, root: str | Path) -> None:
        self.store = store
        self.root = Path(root)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[list[tuple[Any, ...]]]:
        """Batches of ``sql``'s rows (``?`` placeholders) on a connection of their own."""
        if isinstance(self.store, PostgresStore):
            yield from self.store.scan(sql.replace("?", "%s"), params, _BATCH_ROWS)
            return
        if not isinstance(self.store, SQLiteStore):
            raise LakeError(f"unsupported store backend: {type(self.store).__name__}")
        conn = self.store._connect()
        try:
            cur = conn.execute(sql, params)
            while rows := cur.fetchmany(_BATCH_ROWS):
                yield rows
        finally:
            conn.close()

    # ------------------------------------------------------------------ events
    def day_fingerprints(self, first_day: int | None, last_day: int | None) -> dict[int, list[int]]:
        """``{day: [events, sum of seq, anonymous-profile events]}`` for the days with events."""
        lo = -(2**62) if first_day is None else first_day * DAY
        hi = 2**62 if last_day is None else (last_day + 1) * DAY
        # The day of a timestamp: SQLite's CAST truncates, PostgreSQL's rounds (so: floor).
        day = (
            "CAST(floor(ts / ?) AS BIGINT)"
            if isinstance(self.store, PostgresStore)
            else "CAST(ts / ? AS INTEGER)"
        )
        rows = [
            row
            for batch in self._rows(
                f"SELECT {day} AS d, count(*), sum(seq), "
                "sum(CASE WHEN substr(profile_key, 1, ?) = ? THEN 1 ELSE 0 END) FROM events "
                "WHERE ts >= ? AND ts < ? GROUP BY d ORDER BY d",
                (DAY, len(ANONYMOUS_PREFIX), ANONYMOUS_PREFIX, lo, hi),
            )
            for row in batch
        ]
        return {int(d): [int(n), int(s), int(a)] for d, n, s, a in rows}

    def _event_batches(self, day: int, tally: list[int]) -> Iterator[pa.RecordBatch]:
        for rows in self._rows(
            "SELECT seq,message_id,type,profile_key,user_id,anonymous_id,item_id,session_id,"
            "channel,ts,received_at,properties,flags FROM events WHERE ts >= ? AND ts < ? "
            "ORDER BY ts, seq",
            (day * DAY, (day + 1) * DAY),
        ):
            cols = list(zip(*rows, strict=True))
            tally[0] += len(rows)
            tally[1] += sum(cols[0])
            tally[2] += sum(1 for key in cols[3] if key.startswith(ANONYMOUS_PREFIX))
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(cols[0], pa.int64()),
                    *(pa.array(cols[i], pa.string()) for i in range(1, 9)),
                    _micros(cols[9]),
                    _micros(cols[10]),
                    pa.array(cols[11], pa.string()),
                    pa.array(cols[12], pa.int32()),
                ],
                schema=EVENTS_SCHEMA,
            )

    def export_events(
        self,
        manifest: dict[str, Any],
        result: LakeExport,
        *,
        first_day: int | None = None,
        last_day: int | None = None,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Write every day of ``first_day..last_day`` (inclusive; None = open) whose fingerprint
        changed, and remove the partitions of days in the range that no longer have events."""
        parts: dict[str, Any] = manifest["partitions"]
        days = self.day_fingerprints(first_day, last_day)
        saved, dirty = time.monotonic(), False
        try:
            for day, fingerprint in days.items():
                if self._export_day(day, fingerprint, parts, result, overwrite):
                    dirty = True
                    if time.monotonic() - saved >= MANIFEST_EVERY_S:
                        _write_manifest(self.root, manifest)
                        saved, dirty = time.monotonic(), False
                if progress is not None:
                    progress(1)
        finally:
            # Record what was written, even when a later day failed: a re-run resumes from here.
            if dirty:
                _write_manifest(self.root, manifest)
        for name in sorted(parts):
            day = (date.fromisoformat(name) - date(1970, 1, 1)).days
            in_range = (first_day is None or day >= first_day) and (
                last_day is None or day <= last_day
            )
            if in_range and day not in days:
                shutil.rmtree(partition_dir(self.root, day), ignore_errors=True)
                del parts[name]
                _write_manifest(self.root, manifest)
                result.partitions_removed.append(name)

    def _export_day(
        self,
        day: int,
        fingerprint: list[int],
        parts: dict[str, Any],
        result: LakeExport,
        overwrite: bool,
    ) -> bool:
        """Write one day unless its partition is complete and unchanged; True if written."""
        name = day_name(day)
        target = partition_dir(self.root, day) / PART
        known = parts.get(name)
        if (
            not overwrite
            and known is not None
            and known.get("fingerprint") == fingerprint
            and target.is_file()
        ):
            result.partitions_skipped.append(name)
            return False
        tally = [0, 0, 0]
        written = _write_table(target, EVENTS_SCHEMA, self._event_batches(day, tally))
        parts[name] = {"rows": written, "fingerprint": tally, "written_at": iso(time.time())}
        result.events_written += written
        result.partitions_written.append(name)
        return True

    # ------------------------------------------------------------------ snapshots

    def _item_batches(self) -> Iterator[pa.RecordBatch]:
        for rows in self._rows(
            "SELECT id,title,description,categories,tags,price,currency,available,attributes,"
            "created_at,updated_at FROM items ORDER BY id"
        ):
            c = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(c[0], pa.string()),
                    pa.array(c[1], pa.string()),
                    pa.array(c[2], pa.string()),
                    pa.array([orjson.loads(v) for v in c[3]], pa.list_(pa.string())),
                    pa.array([orjson.loads(v) for v in c[4]], pa.list_(pa.string())),
                    pa.array(c[5], pa.float64()),
                    pa.array(c[6], pa.string()),
                    pa.array([bool(v) for v in c[7]], pa.bool_()),
                    pa.array(c[8], pa.string()),
                    _micros(c[9]),
                    _micros(c[10]),
                ],
                schema=ITEMS_SCHEMA,
            )

    def _user_batches(self) -> Iterator[pa.RecordBatch]:
        for rows in self._rows(
            "SELECT id,traits,consent_personalization,consent_tracking,updated_at "
            "FROM users ORDER BY id"
        ):
            c = list(zip(*rows, strict=True))
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(c[0], pa.string()),
                    pa.array(c[1], pa.string()),
                    pa.array([bool(v) for v in c[2]], pa.bool_()),
                    pa.array([bool(v) for v in c[3]], pa.bool_()),
                    _micros(c[4]),
                ],
                schema=USERS_SCHEMA,
            )

    @staticmethod
    def _profile_batches(
        rows: FeatureRows, names: Sequence[str], as_of: float
    ) -> Iterator[pa.RecordBatch]:
        schema = profiles_schema(names)
        chunk: list[tuple[str, Mapping[str, float]]] = []

        def batch() -> pa.RecordBatch:
            return pa.RecordBatch.from_arrays(
                [
                    pa.array([key for key, _ in chunk], pa.string()),
                    _micros([as_of] * len(chunk)),
                    *(
                        pa.array([float(f.get(n, 0.0)) for _, f in chunk], pa.float64())
                        for n in names
                    ),
                ],
                schema=schema,
            )

        emitted = False
        for row in rows:
            chunk.append(row)
            if len(chunk) >= _BATCH_ROWS:
                yield batch()
                chunk, emitted = [], True
        if chunk or not emitted:  # an empty table is written too (with its schema)
            yield batch()

    def export(
        self,
        *,
        as_of: float,
        first_day: int | None = None,
        last_day: int | None = None,
        overwrite: bool = False,
        profile_features: FeatureRows = (),
        feature_names: Sequence[str] = (),
        progress: Callable[[str, int | None], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> LakeExport:
        """Events of the day range (see :meth:`export_events`), then fresh snapshots of items,
        users and profile features (as of ``as_of``, UTC epoch seconds)."""
        started = time.perf_counter()
        result = LakeExport(self.root, as_of)
        with _exclusive(self.root):
            manifest = read_manifest(self.root)
            n_days = len(self.day_fingerprints(first_day, last_day)) if progress else None
            with _step(progress, "export events (days)", n_days) as advance:
                self.export_events(
                    manifest,
                    result,
                    first_day=first_day,
                    last_day=last_day,
                    overwrite=overwrite,
                    progress=advance,
                )
            with _step(progress, "export items, users, profiles", None):
                result.items = _write_table(
                    self.root / "items" / PART, ITEMS_SCHEMA, self._item_batches()
                )
                result.users = _write_table(
                    self.root / "users" / PART, USERS_SCHEMA, self._user_batches()
                )
                result.profiles = _write_table(
                    self.root / "profiles" / PART,
                    profiles_schema(feature_names),
                    self._profile_batches(profile_features, feature_names, as_of),
                )
            manifest.update(
                format=LAKE_FORMAT,
                as_of=iso(as_of),
                as_of_ts=as_of,
                written_at=iso(time.time()),
                tables={
                    "events": {"rows": sum(p["rows"] for p in manifest["partitions"].values())},
                    "items": {"rows": result.items},
                    "users": {"rows": result.users},
                    "profiles": {"rows": result.profiles, "features": list(feature_names)},
                },
            )
            _write_manifest(self.root, manifest)
        result.seconds = time.perf_counter() - started
        return result


@contextlib.contextmanager
def _step(
    progress: Callable[[str, int | None], contextlib.AbstractContextManager[Any]] | None,
    label: str,
    total: int | None,
) -> Iterator[Callable[[int], None] | None]:
    if progress is None:
        yield None
        return
    with progress(label, total) as advance:
        yield advance


def lake_as_of(root: str | Path) -> float:
    """The ``as_of`` time (UTC epoch seconds) of the lake's last complete export."""
    doc = read_manifest(Path(root))
    if "as_of_ts" not in doc:
        raise LakeError(f"no complete export in {root}: run `tailor export parquet {root}`")
    return float(doc["as_of_ts"])


def parse_day(text: str) -> int:
    """``YYYY-MM-DD`` (or an ISO timestamp: its UTC day) as a day number."""
    try:
        if len(text) == 10:
            return (date.fromisoformat(text) - date(1970, 1, 1)).days
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD) or ISO timestamp: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return day_of(dt.timestamp())

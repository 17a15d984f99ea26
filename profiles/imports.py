"""File imports into the profile pipeline: CRM users, event history, transactions.

Events and transactions go through :class:`~profiles.ingest.IngestionService` (the same validation,
dedup and profile updates as the live API). Rows without a ``messageId`` get a deterministic one
derived from their content, so importing the same file twice reports duplicates instead of
double-counting. Columns other than the event fields become ``properties`` (``price``,
``quantity``, ``value``, ``query``, ``orderId``, ...). Rejected rows are written to a rejects file
(JSONL: row, field, reason) next to the import file.

MovieLens ``ratings.csv`` imports with::

    tailor import events ratings.csv --type rate --id-prefix ml \\
        --map userId=userId,movieId=itemId,rating=value
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from profiles.events import KNOWN_FIELDS
from profiles.ingest import IngestionService
from storage import fields
from storage.files import ParseFailure, read_rows
from storage.types import UserRecord, UserStore

BATCH = 10_000


@dataclass(slots=True)
class FileImportSummary:
    kind: str
    path: Path
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    dropped: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    rejects_file: Path | None = None

    def summary(self) -> str:
        line = (
            f"{self.kind}: {self.read} rows read, {self.accepted} accepted, {self.duplicates} duplicates, "
            f"{self.conflicts} conflicts, {len(self.rejected)} rejected"
        )
        if self.rejects_file:
            line += f" (reasons in {self.rejects_file})"
        return line

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "rejected": len(self.rejected),
            "rejectsFile": str(self.rejects_file) if self.rejects_file else None,
        }


def _finish(summary: FileImportSummary) -> FileImportSummary:
    if summary.rejected:
        path = summary.path.with_name(summary.path.name + ".rejects.jsonl")
        with path.open("wb") as fh:
            for row, fld, reason in summary.rejected:
                fh.write(orjson.dumps({"row": row, "field": fld, "reason": reason}) + b"\n")
        summary.rejects_file = path
    return summary


def _event_from_row(
    row: dict[str, Any], default_type: str | None, id_prefix: str
) -> dict[str, Any]:
    ev: dict[str, Any] = {}
    props: dict[str, Any] = (
        dict(row.pop("properties", None) or {}) if isinstance(row.get("properties"), dict) else {}
    )
    if isinstance(row.get("properties"), str):
        try:
            props.update(orjson.loads(row.pop("properties")))
        except orjson.JSONDecodeError:
            ev["properties"] = row.pop("properties")  # let validation report it
    for key, value in row.items():
        if key in KNOWN_FIELDS:
            ev[key] = value
        else:
            props[key] = value
    if props:
        ev.setdefault("properties", props)
    if default_type and "type" not in ev:
        ev["type"] = default_type
    if id_prefix:
        for key in ("userId", "anonymousId", "itemId", "sessionId"):
            if key in ev and ev[key] not in (None, ""):
                ev[key] = f"{id_prefix}{ev[key]}"
    for key in ("userId", "itemId", "anonymousId", "sessionId"):
        if isinstance(ev.get(key), int | float) and not isinstance(ev.get(key), bool):
            ev[key] = str(int(ev[key]))
    if "messageId" not in ev:
        digest = hashlib.sha256(
            orjson.dumps(ev, option=orjson.OPT_SORT_KEYS, default=str)
        ).hexdigest()
        ev["messageId"] = f"imp-{digest[:32]}"
    return ev


def import_events(
    service: IngestionService,
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    default_type: str | None = None,
    id_prefix: str = "",
    progress: Callable[[int], None] | None = None,
    kind: str = "events",
    rows: Iterator[tuple[int, dict[str, Any] | ParseFailure]] | None = None,
) -> FileImportSummary:
    """Import an event history file (NDJSON, CSV, Parquet) through the ingestion service."""
    path = Path(path)
    summary = FileImportSummary(kind=kind, path=path)
    batch: list[dict[str, Any]] = []
    numbers: list[int] = []

    def flush() -> None:
        result = service.ingest_sync(batch)
        for r in result.results:
            if r.status == "accepted":
                summary.accepted += 1
            elif r.status == "duplicate":
                summary.duplicates += 1
            elif r.status == "dropped":
                summary.dropped += 1
            elif r.status == "conflict":
                summary.conflicts += 1
                summary.rejected.append((numbers[r.index], r.field or "-", r.reason or ""))
            else:
                summary.rejected.append((numbers[r.index], r.field or "-", r.reason or ""))
        if progress:
            progress(len(batch))
        batch.clear()
        numbers.clear()

    source = rows if rows is not None else read_rows(path, fmt, mapping)
    for number, row in source:
        summary.read += 1
        if isinstance(row, ParseFailure):
            summary.rejected.append((number, "-", row.reason))
            continue
        batch.append(_event_from_row(row, default_type, id_prefix))
        numbers.append(number)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return _finish(summary)


def import_transactions(
    service: IngestionService,
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> FileImportSummary:
    """Orders with lines (orderId, userId, itemId, price, quantity, timestamp) -> purchase events.

    Each line becomes one ``purchase`` event with messageId ``order:<orderId>:<itemId>`` so a
    re-import is idempotent and the order counts once for frequency (RFM).
    """

    def lines() -> Iterator[tuple[int, dict[str, Any] | ParseFailure]]:
        for number, row in read_rows(path, fmt, mapping):
            if isinstance(row, dict):
                order = row.get("orderId")
                if order in (None, ""):
                    yield number, ParseFailure("orderId: is required")
                    continue
                row = {**row, "type": "purchase", "channel": row.get("channel", "offline")}
                row.setdefault("messageId", f"order:{order}:{row.get('itemId', '')}")
            yield number, row

    return import_events(service, path, progress=progress, kind="transactions", rows=lines())


def validate_user(row: dict[str, Any], now: float) -> UserRecord:
    """A CRM row: ``id``, ``traits`` (object, or any other columns), consent flags."""
    user_id = fields.ident(row, "id")
    assert user_id is not None
    traits = fields.json_object(row, "traits")
    consent = row.get("consent") or {}
    if isinstance(consent, str):
        try:
            consent = orjson.loads(consent)
        except orjson.JSONDecodeError:
            raise fields.FieldError("consent", "must be an object") from None
    if not isinstance(consent, dict):
        raise fields.FieldError("consent", "must be an object")
    flags = {
        "personalization": fields.boolean(
            {"v": row.get("consent_personalization", consent.get("personalization"))}, "v", True
        ),
        "tracking": fields.boolean(
            {"v": row.get("consent_tracking", consent.get("tracking"))}, "v", True
        ),
    }
    reserved = {"id", "traits", "consent", "consent_personalization", "consent_tracking"}
    for key, value in row.items():
        if key not in reserved and not str(key).startswith("traits."):
            traits[str(key)] = value  # CRM exports: extra columns are traits
    if len(orjson.dumps(traits, default=str)) > 16_000:
        raise fields.FieldError("traits", "larger than 16 kB")
    return UserRecord(user_id, traits, flags["personalization"], flags["tracking"], now)


def import_users(
    store: UserStore,
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    now: float,
    progress: Callable[[int], None] | None = None,
) -> FileImportSummary:
    """Validate every row, then write the valid users in one transaction; rejects go to a file."""
    path = Path(path)
    summary = FileImportSummary(kind="users", path=path)
    valid: dict[str, UserRecord] = {}
    for number, row in read_rows(path, fmt, mapping):
        summary.read += 1
        if progress:
            progress(1)
        if isinstance(row, ParseFailure):
            summary.rejected.append((number, "-", row.reason))
            continue
        try:
            user = validate_user(row, now)
        except fields.FieldError as exc:
            summary.rejected.append((number, exc.field, exc.reason))
            continue
        valid[user.id] = user
    summary.accepted = store.upsert_users(list(valid.values()))
    return _finish(summary)

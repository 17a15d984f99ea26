"""Validated import of catalog items from JSONL, CSV or Parquet.

Imports are atomic: every row is validated first and, unless ``skip_invalid`` is set, one invalid
row means nothing is written (the report lists every bad row with its field and reason). With
``skip_invalid`` the valid rows are written in one transaction and the rejects go to a file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from catalog.types import ImportRejected, ImportReport, RowError
from storage import fields
from storage.files import ParseFailure, read_rows
from storage.timeutil import parse_timestamp
from storage.types import CatalogStore, ItemRecord

ITEM_FIELDS = {
    "id",
    "title",
    "description",
    "categories",
    "tags",
    "price",
    "currency",
    "available",
    "attributes",
    "created_at",
    "updated_at",
}


def validate_item(row: dict[str, Any], now: float) -> ItemRecord:
    """Turn one raw row into an :class:`ItemRecord`; raises ``FieldError``."""
    item_id = fields.ident(row, "id")
    assert item_id is not None
    currency = fields.text(row, "currency", max_len=3) or "EUR"
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise fields.FieldError("currency", "must be a 3-letter upper-case ISO 4217 code")
    attributes = fields.json_object(row, "attributes")
    if len(orjson.dumps(attributes)) > 10_000:
        raise fields.FieldError("attributes", "larger than 10 kB")
    stamps = {}
    for name in ("created_at", "updated_at"):
        if row.get(name) in (None, ""):
            stamps[name] = now
        else:
            try:
                stamps[name] = parse_timestamp(row[name])
            except ValueError as exc:
                raise fields.FieldError(name, str(exc)) from None
    unknown = {k for k in row if k not in ITEM_FIELDS and not str(k).startswith("attributes.")}
    if unknown:
        raise fields.FieldError(sorted(unknown)[0], "unknown field (map it with --map or drop it)")
    return ItemRecord(
        id=item_id,
        title=fields.text(row, "title", max_len=500, required=True),
        description=fields.text(row, "description", max_len=10_000),
        categories=fields.string_list(row, "categories"),
        tags=fields.string_list(row, "tags"),
        price=fields.number(row, "price", minimum=0, maximum=1e9),
        currency=currency,
        available=fields.boolean(row, "available", True),
        attributes=attributes,
        created_at=stamps["created_at"],
        updated_at=stamps["updated_at"],
    )


def import_items(
    store: CatalogStore,
    path: str | Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    rejects_file: Path | None = None,
    now: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_written: Callable[[list[ItemRecord]], None] | None = None,
) -> ImportReport:
    """Validate and write items; raises :class:`ImportRejected` on invalid rows unless skipping."""
    path = Path(path)
    now = time.time() if now is None else now
    report = ImportReport(kind="items", path=path)
    valid: dict[str, ItemRecord] = {}
    for number, row in read_rows(path, fmt, mapping):
        report.read += 1
        if progress:
            progress(1)
        if isinstance(row, ParseFailure):
            report.errors.append(RowError(number, "-", row.reason))
            continue
        try:
            item = validate_item(row, now)
        except fields.FieldError as exc:
            report.errors.append(RowError(number, exc.field, exc.reason))
            continue
        valid[item.id] = item  # a later row with the same id wins, as an upsert would
    if report.errors:
        rejects = rejects_file or path.with_name(path.name + ".rejects.jsonl")
        write_rejects(rejects, report.errors)
        report.rejects_file = rejects
        if not skip_invalid:
            raise ImportRejected(report)
    items = list(valid.values())
    report.written = store.upsert_items(items)
    if on_written:
        on_written(items)
    return report


def write_rejects(path: Path, errors: list[RowError]) -> None:
    with path.open("wb") as fh:
        for e in errors:
            fh.write(orjson.dumps({"row": e.row, "field": e.field, "reason": e.reason}) + b"\n")

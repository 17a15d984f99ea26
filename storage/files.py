"""Row readers for import files: JSONL/NDJSON, CSV and Parquet, with line numbers and column mapping.

Every reader yields ``(row_number, mapping)`` pairs; row numbers are 1-based lines for JSONL and
CSV (the CSV header is line 1, so the first data row is line 2) and 1-based row indexes for
Parquet. A line that is not valid JSON yields ``(row_number, ParseFailure)`` so the importer can
report it with the others instead of aborting the whole file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from storage.types import StorageError


class ImportFileError(StorageError):
    """The file cannot be read at all (missing, unknown format, unreadable header)."""


@dataclass(frozen=True, slots=True)
class ParseFailure:
    reason: str


FORMATS = ("jsonl", "csv", "parquet")


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        fmt = explicit.lower()
    else:
        suffix = path.suffix.lower().lstrip(".")
        fmt = {
            "ndjson": "jsonl",
            "json": "jsonl",
            "jsonl": "jsonl",
            "csv": "csv",
            "parquet": "parquet",
            "pq": "parquet",
        }.get(suffix, "")
    if fmt == "ndjson":
        fmt = "jsonl"
    if fmt not in FORMATS:
        raise ImportFileError(
            f"cannot tell the format of {path.name}: use a .jsonl/.ndjson, .csv or .parquet file "
            "or pass --format"
        )
    return fmt


def read_rows(
    path: str | Path,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> Iterator[tuple[int, dict[str, Any] | ParseFailure]]:
    """Yield the rows of an import file; ``mapping`` renames source columns to Tailor's names."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"file not found: {path}")
    kind = detect_format(path, fmt)
    rename = dict(mapping or {})
    rows: Iterator[tuple[int, dict[str, Any] | ParseFailure]]
    if kind == "jsonl":
        rows = _jsonl(path)
    elif kind == "csv":
        rows = _csv(path)
    else:
        rows = _parquet(path)
    for number, row in rows:
        if isinstance(row, dict) and rename:
            row = {rename.get(k, k): v for k, v in row.items()}
        yield number, row


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | ParseFailure]]:
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield number, ParseFailure(f"invalid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield number, ParseFailure("expected a JSON object on each line")
                continue
            yield number, value


def _csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | ParseFailure]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{path.name} is not UTF-8 text: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ImportFileError(f"{path.name} has no header row")
    for row in reader:
        number = reader.line_num
        if None in row:
            yield number, ParseFailure("more values than header columns")
            continue
        yield number, {k: v for k, v in row.items() if v not in (None, "")}


def _parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | ParseFailure]]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for unreadable files
        raise ImportFileError(f"{path.name} is not a readable Parquet file: {exc}") from exc
    number = 0
    for batch in table.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            number += 1
            yield number, {k: v for k, v in row.items() if v is not None}


def parse_mapping(spec: str | None) -> dict[str, str]:
    """Parse ``src=dst,src2=dst2`` (the CLI's ``--map``) into a rename mapping."""
    if not spec:
        return {}
    out: dict[str, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ImportFileError(f"bad column mapping {part!r}: expected SOURCE=TARGET")
        src, dst = (p.strip() for p in part.split("=", 1))
        if not src or not dst:
            raise ImportFileError(f"bad column mapping {part!r}: expected SOURCE=TARGET")
        out[src] = dst
    return out

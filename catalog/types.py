"""Catalog contracts: the item model (re-exported from storage), import reports and errors.

Error hierarchy::

    CatalogError
    └── ImportRejected   (a strict import found invalid rows; nothing was written)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storage.types import ItemRecord

Item = ItemRecord


class CatalogError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected row: where it is, which field, and why."""

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.reason}"


@dataclass(slots=True)
class ImportReport:
    """Outcome of one file import."""

    kind: str
    path: Path
    read: int = 0
    written: int = 0
    errors: list[RowError] = field(default_factory=list)
    rejects_file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        line = f"{self.kind}: {self.read} rows read, {self.written} written, {len(self.errors)} rejected"
        if self.rejects_file:
            line += f" (reasons in {self.rejects_file})"
        return line


class ImportRejected(CatalogError):
    def __init__(self, report: ImportReport) -> None:
        self.report = report
        shown = "; ".join(str(e) for e in report.errors[:5])
        more = f" (and {len(report.errors) - 5} more)" if len(report.errors) > 5 else ""
        super().__init__(
            f"{report.path.name}: {len(report.errors)} invalid rows, nothing imported: {shown}{more}"
        )

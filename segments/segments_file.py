"""The marketer-edited segments file (TOML or JSON, by suffix): name/description overrides for
cluster segments by id, and rule segments.

TOML shape (the JSON file has the same keys: {"segments": {...}, "rule": [...]})::

    [segments.c1]
    name = "VIPs"
    description = "Our best customers"

    [[rule]]
    id = "cart-abandoners"
    name = "Cart abandoners"
    description = "Added to cart this week, bought nothing"
    expression = "add_to_cart_7d > 0 and purchases_7d == 0"
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segments.rules import compile_rule
from segments.types import RuleError, RuleSegment, SegmentsFileError


@dataclass(frozen=True)
class SegmentOverride:
    """Marketer's name/description for one cluster id; None keeps the generated one."""

    name: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class SegmentsFile:
    overrides: dict[str, SegmentOverride] = field(default_factory=dict)
    rules: list[RuleSegment] = field(default_factory=list)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SegmentsFileError(f"{where} must be a string")
    return value


def parse_segments_data(data: Any) -> SegmentsFile:
    """Validate an already-decoded document; every rule is compiled so errors surface at load."""
    if not isinstance(data, dict):
        raise SegmentsFileError("segments file must be a table/object at the top level")
    unknown = set(data) - {"segments", "rule"}
    if unknown:
        raise SegmentsFileError(f"unknown top-level keys: {sorted(unknown)}")
    overrides: dict[str, SegmentOverride] = {}
    raw_overrides = data.get("segments", {})
    if not isinstance(raw_overrides, dict):
        raise SegmentsFileError("'segments' must be a table keyed by segment id")
    for seg_id, entry in raw_overrides.items():
        if not isinstance(entry, dict) or set(entry) - {"name", "description"}:
            raise SegmentsFileError(f"segments.{seg_id}: only 'name' and 'description' allowed")
        overrides[str(seg_id)] = SegmentOverride(
            name=_text(entry["name"], f"segments.{seg_id}.name") if "name" in entry else None,
            description=(
                _text(entry["description"], f"segments.{seg_id}.description")
                if "description" in entry
                else None
            ),
        )
    raw_rules = data.get("rule", [])
    if not isinstance(raw_rules, list):
        raise SegmentsFileError("'rule' must be a list ([[rule]] in TOML)")
    rules: list[RuleSegment] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw_rules):
        where = f"rule[{i}]"
        if not isinstance(entry, dict):
            raise SegmentsFileError(f"{where} must be a table")
        rule = RuleSegment(
            id=_text(entry.get("id"), f"{where}.id"),
            name=_text(entry.get("name", entry.get("id")), f"{where}.name"),
            description=_text(entry.get("description", ""), f"{where}.description"),
            expression=_text(entry.get("expression"), f"{where}.expression"),
        )
        if rule.id in seen or rule.id in overrides:
            raise SegmentsFileError(f"{where}: duplicate segment id {rule.id!r}")
        seen.add(rule.id)
        try:
            compile_rule(rule.expression)
        except RuleError as exc:
            raise SegmentsFileError(f"rule {rule.id!r}: {exc}") from exc
        rules.append(rule)
    return SegmentsFile(overrides, rules)


def load_segments_file(path: str | Path) -> SegmentsFile:
    """Read a `.toml` or `.json` segments file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
        elif path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            raise SegmentsFileError(f"{path}: expected a .toml or .json file")
    except (OSError, ValueError) as exc:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise SegmentsFileError(f"{path}: {exc}") from exc
    return parse_segments_data(data)

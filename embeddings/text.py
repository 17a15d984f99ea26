"""Item text rendering: the one place that decides what an item "says" to the encoder.

Templates are ``str.format``-style with two additions:

- ``[[ ... ]]`` marks an *optional section*, dropped entirely when every field inside it
  renders empty — so "Tags: ." never appears for an untagged item.
- Field names may be dotted to reach into mappings, e.g. ``{attributes.color}``.

Values render as: strings as-is; lists/sets/tuples joined with ", " (sets sorted, so the
text — and therefore the embedding cache key — is stable); mappings as ``key: value``
pairs joined with "; "; None and missing fields as "". Whitespace is collapsed at the end.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Set
from typing import Any

DEFAULT_ITEM_TEMPLATE = (
    "[[{title}.]][[ Categories: {categories}.]][[ Tags: {tags}.]]"
    "[[ {description}]][[ {attributes}.]]"
)
"""Title first (it carries most meaning for short-text models like MiniLM), then the
categories, tags, free description and remaining attributes."""

_SECTION = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_SPACE = re.compile(r"\s+")
_FORMATTER = string.Formatter()


def value_text(value: Any) -> str:
    """Render one field value as text (see the module docstring for the rules)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        parts = (f"{k}: {value_text(v)}" for k, v in value.items())
        return "; ".join(p for p in parts if not p.endswith(": "))
    if isinstance(value, Set):
        return ", ".join(sorted(t for t in (value_text(v) for v in value) if t))
    if isinstance(value, list | tuple):
        return ", ".join(t for t in (value_text(v) for v in value) if t)
    return str(value)


def _lookup(item: Mapping[str, Any], field_name: str) -> Any:
    value: Any = item
    for part in field_name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _render(item: Mapping[str, Any], template: str) -> tuple[str, bool]:
    """Format ``template``; also report whether any field produced non-empty text."""
    out: list[str] = []
    any_value = False
    for literal, field_name, spec, _conversion in _FORMATTER.parse(template):
        out.append(literal)
        if field_name is None:
            continue
        text = value_text(_lookup(item, field_name)).strip()
        if text:
            any_value = True
            out.append(format(text, spec) if spec else text)
    return "".join(out), any_value


def render_item_text(item: Mapping[str, Any], template: str = DEFAULT_ITEM_TEMPLATE) -> str:
    """The text to embed for ``item`` (a catalog record as a mapping), per ``template``.

    Common fields: ``title``, ``categories``, ``tags``, ``description``, ``attributes``
    (a mapping); any other key of ``item`` may be used too. Missing fields are tolerated.
    """
    pieces: list[str] = []
    position = 0
    for match in _SECTION.finditer(template):
        head, _ = _render(item, template[position : match.start()])
        pieces.append(head)
        section, has_value = _render(item, match.group(1))
        if has_value:
            pieces.append(section)
        position = match.end()
    tail, _ = _render(item, template[position:])
    pieces.append(tail)
    return _SPACE.sub(" ", "".join(pieces)).strip()

"""Field validators shared by every import path (items, users, events).

Each raises :class:`FieldError` naming the field and the reason, so callers can report
``row 12: price: must be >= 0`` without guessing.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

MAX_ID_LENGTH = 128
MAX_JSON_DEPTH = 32  # nesting levels of a free-form JSON field (properties, traits)
# ``|``: identity providers' subjects (Auth0 ``auth0|5f…``, ``google-oauth2|10…``) are user ids.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@|\-]*\Z")
# The common case in one C call: a well-formed id of legal length.
_VALID_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@|\-]{{0,{MAX_ID_LENGTH - 1}}}").fullmatch
# For hot loops that inline :func:`ident`'s fast path: a match means ``ident`` returns the value.
valid_id = _VALID_ID
_CONTAINERS = (dict, list)


class FieldError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def ident(row: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = row.get(field)
    if value.__class__ is str and _VALID_ID(value):
        return value
    if value is None or value == "":
        if required:
            raise FieldError(field, "is required")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > 64:  # str() of a huge int is slow (and fails past 4300 digits)
            raise FieldError(field, "an integer id must fit in 64 bits; send ids as strings")
        value = str(value)
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string id, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise FieldError(field, f"longer than {MAX_ID_LENGTH} characters")
    if not _ID_RE.match(value):
        raise FieldError(
            field,
            "may contain only letters, digits and . _ : @ | - (and must start with a letter or digit)",
        )
    return value


def text(row: dict[str, Any], field: str, *, max_len: int, required: bool = False) -> str:
    value = row.get(field)
    if value is None or value == "":
        if required:
            raise FieldError(field, "is required")
        return ""
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise FieldError(field, f"longer than {max_len} characters")
    if "\x00" in value:
        raise FieldError(field, "contains a NUL character")
    return value.strip()


def number(
    row: dict[str, Any],
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    required: bool = False,
) -> float | None:
    value = row.get(field)
    if value is None or value == "":
        if required:
            raise FieldError(field, "is required")
        return None
    if isinstance(value, bool):
        raise FieldError(field, "must be a number, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise FieldError(field, f"must be a number, got {str(value)[:20]!r}") from None
    if not isinstance(value, int | float):
        raise FieldError(field, f"must be a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError:  # an int beyond the float range
        raise FieldError(field, "must be a finite number") from None
    if not math.isfinite(result):
        raise FieldError(field, "must be a finite number")
    if minimum is not None and result < minimum:
        raise FieldError(field, f"must be >= {minimum:g}")
    if maximum is not None and result > maximum:
        raise FieldError(field, f"must be <= {maximum:g}")
    return result


def boolean(row: dict[str, Any], field: str, default: bool) -> bool:
    value = row.get(field)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise FieldError(field, f"must be true or false, got {value!r}")


def string_list(
    row: dict[str, Any], field: str, *, max_items: int = 50, max_len: int = 100
) -> tuple[str, ...]:
    """A list of strings; CSV cells use ``|`` as the separator (``Women|Dresses``)."""
    value = row.get(field)
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [p for p in (s.strip() for s in value.split("|")) if p]
    if not isinstance(value, list | tuple):
        raise FieldError(field, f"must be a list of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise FieldError(field, f"more than {max_items} entries")
    out = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise FieldError(field, "entries must be non-empty strings")
        if len(v) > max_len:
            raise FieldError(field, f"an entry is longer than {max_len} characters")
        out.append(v.strip())
    return tuple(dict.fromkeys(out))


def json_document(
    value: Any, field: str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH
) -> bytes:
    """Check a free-form JSON value (event properties, traits): nested at most ``max_depth``
    levels, plain JSON (string keys, integers within 64 bits, finite numbers), at most
    ``max_bytes`` encoded. Returns the encoding. The depth is checked without recursion, so a
    value nested thousands deep costs a loop, never a ``RecursionError``."""
    # The common case, a flat object (no object or list inside), has nothing deeper to walk.
    flat = (
        isinstance(value, dict)
        and max_depth >= 1
        and not any(isinstance(child, _CONTAINERS) for child in value.values())
    )
    stack: list[tuple[Any, int]] = [] if flat else [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                raise FieldError(field, f"nested deeper than {max_depth} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    try:
        encoded = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise FieldError(field, f"must be plain JSON ({exc})") from None
    if len(encoded) > max_bytes:
        raise FieldError(field, f"larger than {max_bytes} bytes")
    return encoded


def json_object(row: dict[str, Any], field: str) -> dict[str, Any]:
    """A JSON object; CSV/Parquet may carry it as a JSON string or as ``field.key`` columns."""
    value = row.get(field)
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise FieldError(field, "must be a JSON object") from None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, got {type(value).__name__}")
    prefix = field + "."
    for key, v in row.items():
        if isinstance(key, str) and key.startswith(prefix):
            value[key[len(prefix) :]] = v
    return dict(value)

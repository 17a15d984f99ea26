"""Field validators shared by every import path (items, users, events).

Each raises :class:`FieldError` naming the field and the reason, so callers can report
``row 12: price: must be >= 0`` without guessing.
"""

from __future__ import annotations

import math
import re
from typing import Any

MAX_ID_LENGTH = 128
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@\-]*$")
# The common case in one C call: a well-formed id of legal length.
_VALID_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:@\-]{{0,{MAX_ID_LENGTH - 1}}}").fullmatch


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
        value = str(value)
    if not isinstance(value, str):
        raise FieldError(field, f"must be a string id, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise FieldError(field, f"longer than {MAX_ID_LENGTH} characters")
    if not _ID_RE.match(value):
        raise FieldError(
            field,
            "may contain only letters, digits and . _ : @ - (and must start with a letter or digit)",
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
    result = float(value)
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


def json_object(row: dict[str, Any], field: str) -> dict[str, Any]:
    """A JSON object; CSV/Parquet may carry it as a JSON string or as ``field.key`` columns."""
    import orjson

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

"""Canonical cache keys for GraphQL responses.

A key is the truncated sha256 of a canonical JSON document
``[version, operation_hash, variables, scope_key, vary]``; the JSON array makes the parts
unambiguous (no separator can be forged inside a variable value). Two requests that differ
only in variable order, JSON whitespace, ``1`` vs ``1.0`` or header-name case get the same key.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from cache.types import CacheScope

# Bump when the canonical form changes so old keys in a shared tier cannot collide.
_KEY_VERSION = 1
# 32 hex chars = 128 bits: collision-free in practice and short enough for headers/Redis.
KEY_HEX_LENGTH = 32

_SCOPE_KEY = re.compile(r"\A(?:|seg:[^\s]+|user:[^\s]+)\Z")


def segment_scope(segment_id: str | int) -> str:
    """``scope_key`` of an answer shared by one segment."""
    return f"seg:{segment_id}"


def user_scope(user_id: str | int) -> str:
    """``scope_key`` of an answer private to one user."""
    return f"user:{user_id}"


def scope_of(scope_key: str) -> CacheScope:
    """The ``CacheScope`` a ``scope_key`` is entitled to ("" -> PUBLIC)."""
    if scope_key.startswith("user:"):
        return CacheScope.PRIVATE
    if scope_key.startswith("seg:"):
        return CacheScope.SEGMENT
    return CacheScope.PUBLIC


def _canonical(value: Any) -> Any:
    """A JSON-ready copy with one spelling per value (integral floats become ints)."""
    # bool before int/float: True is an int in Python but a distinct JSON value.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite float {value!r} cannot be part of a cache key")
        # GraphQL coerces 1 and 1.0 to the same Float, so one key serves both; -0.0 -> 0.
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"variable object keys must be str, got {type(k).__name__}")
            out[k] = _canonical(v)
        return out
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, shortest round-trip floats (``repr``), UTF-8 as is."""
    return json.dumps(
        _canonical(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _canonical_vary(vary: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[list[str]]:
    pairs = vary.items() if isinstance(vary, Mapping) else vary
    return sorted([name.strip().lower(), value.strip()] for name, value in pairs)


def cache_key(
    operation_hash: str,
    variables: Mapping[str, Any] | None = None,
    scope_key: str = "",
    vary: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> str:
    """Key of one cacheable answer, as ``KEY_HEX_LENGTH`` lower-case hex characters.

    ``operation_hash``: the persisted-query sha256 (or any stable id of the document).
    ``variables``: the request's variables (JSON values); ``None`` and ``{}`` are the same.
    ``scope_key``: ``""`` (public), ``"seg:<id>"`` or ``"user:<id>"``.
    ``vary``: (header name, value) pairs the answer varies on; names are case-insensitive.
    Raises ``ValueError`` on a malformed ``scope_key`` or NaN/inf, ``TypeError`` on
    non-JSON variables.
    """
    if not _SCOPE_KEY.match(scope_key):
        raise ValueError(f"scope_key must be '', 'seg:<id>' or 'user:<id>', got {scope_key!r}")
    document = [
        _KEY_VERSION,
        operation_hash,
        variables or {},
        scope_key,
        _canonical_vary(vary),
    ]
    digest = hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()
    return digest[:KEY_HEX_LENGTH]

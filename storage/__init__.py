"""Persistence backends behind one protocol per store (see ``storage.types``).

:func:`open_store` is the one place that picks a backend: a ``postgresql://`` URL opens the
PostgreSQL system of record (``storage.postgres``), anything else is the path of the embedded
SQLite file (``storage.sqlite``). No module outside ``storage/`` knows which one it talks to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from storage.sqlite import SQLiteStore
from storage.types import StorageError, Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(target: str | Path) -> bool:
    """True when ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def describe(target: str | Path) -> str:
    """``target`` fit for messages: a URL with its password redacted, or the file path."""
    if isinstance(target, str) and "://" in target:
        from storage.postgres import redact

        return redact(target)
    return str(target)


def open_store(
    target: str | Path,
    *,
    traits_filter: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    pool_min: int = 1,
    pool_max: int = 10,
    connect_timeout_s: float = 5.0,
) -> Store:
    """Open (creating and migrating as needed) the store ``target`` names.

    ``postgresql://user@host:5432/db`` (or ``postgres://``): PostgreSQL through a pool of
    ``pool_min``..``pool_max`` connections (raises ``StoreUnavailable`` when the server cannot
    be reached within ``connect_timeout_s``). Any other string or path: the SQLite file there.
    ``traits_filter`` is applied to every user's traits before they are written.
    """
    if is_database_url(target):
        from storage.postgres import PostgresStore  # psycopg is imported only when used

        return PostgresStore(
            str(target),
            traits_filter=traits_filter,
            min_size=pool_min,
            max_size=pool_max,
            connect_timeout_s=connect_timeout_s,
        )
    if isinstance(target, str) and "://" in target:
        raise StorageError(
            f"unsupported database URL {describe(target)!r}: use postgresql://… or a file path"
        )
    return SQLiteStore(target, traits_filter=traits_filter)


__all__ = ["SQLiteStore", "Store", "describe", "is_database_url", "open_store"]

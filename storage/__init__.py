"""Persistence backends behind one protocol per store (see ``storage.types``).

:func:`open_store` is the one place that picks a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from storage.sqlite import SQLiteStore
from storage.types import Store


def open_store(
    path: str | Path,
    *,
    traits_filter: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> SQLiteStore:
    """Open (creating and migrating as needed) the embedded SQLite store at ``path``."""
    return SQLiteStore(path, traits_filter=traits_filter)


__all__ = ["SQLiteStore", "Store", "open_store"]

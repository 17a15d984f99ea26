"""Persistence backends behind one protocol per store (see ``storage.types``).

:func:`open_store` is the one place that picks a backend.
"""

from __future__ import annotations

from pathlib import Path

from storage.sqlite import SQLiteStore
from storage.types import Store


def open_store(path: str | Path) -> SQLiteStore:
    """Open (creating and migrating as needed) the embedded SQLite store at ``path``."""
    return SQLiteStore(path)


__all__ = ["SQLiteStore", "Store", "open_store"]

"""The store conformance fixtures: every test that takes ``any_store`` runs on SQLite and on
PostgreSQL (a database of this session's own; see ``tests/pg.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import open_store
from storage.types import Store
from tests.pg import pg_empty, pg_url

__all__ = ["pg_empty", "pg_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where an empty store lives: a fresh SQLite file, or the emptied session database."""
    if request.param == "sqlite":
        return tmp_path / "t.db"
    return str(request.getfixturevalue("pg_empty"))


@pytest.fixture
def any_store(store_target: str | Path) -> Iterator[Store]:
    store = open_store(store_target)
    try:
        yield store
    finally:
        store.close()

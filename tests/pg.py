"""A PostgreSQL database of our own for the test session (real server, never mocked).

``pg_url`` creates ``tailor_test_<random>`` on the server at ``TAILOR_TEST_PG_ADMIN`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, the trust-auth server CI starts), migrates it
once and drops it at the end of the session. ``pg_empty`` truncates every table first, so each
test starts from an empty store without paying for a database per test.

``store_target`` is parametrized over both backends (a fresh SQLite file, or the emptied session
database) and ``any_store`` opens it: a test that takes either runs on SQLite and PostgreSQL.

Import the fixtures into a conftest or test module: ``from tests.pg import pg_empty, pg_url``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from storage import open_store
from storage.postgres import TABLES
from storage.types import Store

ADMIN_URL = os.environ.get("TAILOR_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def create_database(prefix: str = "tailor_test_") -> str:
    name = f"{prefix}{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def truncate(url: str) -> None:
    """Empty every table and restart the sequences (DELETE: much faster than TRUNCATE on the
    few rows a test writes)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for table in TABLES:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        for table in ("events", "erasures"):
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN seq RESTART").format(sql.Identifier(table))
            )


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a migrated database private to this test session."""
    name = create_database()
    url = database_url(name)
    try:
        open_store(url).close()  # migrate once
        yield url
    finally:
        drop_database(name)


@pytest.fixture
def pg_empty(pg_url: str) -> str:
    """``pg_url`` with every table emptied for this test."""
    truncate(pg_url)
    return pg_url


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

"""``store_target`` (SQLite and PostgreSQL, see ``tests/pg.py``) for the profile tests that run
on both backends."""

from tests.pg import pg_empty, pg_url, store_target

__all__ = ["pg_empty", "pg_url", "store_target"]

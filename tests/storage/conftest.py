"""The store conformance fixtures: every test that takes ``any_store`` or ``store_target`` runs
on SQLite and on PostgreSQL (a database of this session's own; see ``tests/pg.py``)."""

from tests.pg import any_store, pg_empty, pg_url, store_target

__all__ = ["any_store", "pg_empty", "pg_url", "store_target"]

"""The database settings: TAILOR_DATABASE_URL selects PostgreSQL, unset keeps SQLite under
data_dir; bad values are refused with the setting's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings


def test_unset_means_the_sqlite_file_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAILOR_DATABASE_URL", raising=False)
    s = load_settings(data_dir=Path("/srv/t"))
    assert s.database_url is None and s.database == Path("/srv/t/tailor.db")


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_DATABASE_URL", "postgresql://t@db:5432/tailor")
    monkeypatch.setenv("TAILOR_DATABASE_POOL_MAX", "4")
    s = load_settings()
    assert s.database == "postgresql://t@db:5432/tailor" and s.database_pool_max == 4


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"database_url": "sqlite:///x.db"}, "database_url"),
        ({"database_url": "db.internal:5432"}, "database_url"),
        ({"database_pool_min": 0}, "database_pool_min"),
        ({"database_pool_min": 5, "database_pool_max": 2}, "database_pool_max"),
        ({"database_connect_timeout_s": 0}, "database_connect_timeout_s"),
    ],
)
def test_bad_values_name_the_setting(changes: dict[str, object], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(**changes)

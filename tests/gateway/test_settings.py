from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings


def test_defaults_run_on_one_machine() -> None:
    s = load_settings(environ={})
    assert s.data_dir == Path("var")
    assert s.db_path == Path("var/tailor.db")
    assert s.graphiql_enabled and not s.production


def test_env_overrides_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "tailor.toml"
    cfg.write_text('port = 9000\nproduction = false\ncustom_event_types = ["wishlist"]\n')
    s = load_settings(cfg, environ={"TAILOR_PORT": "9100", "TAILOR_MAX_FIRST": "50"})
    assert s.port == 9100
    assert s.max_first == 50
    assert s.custom_event_types == ("wishlist",)


def test_settings_are_immutable() -> None:
    s = load_settings(environ={})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TAILOR_PORT": "eighty"}, "port"),
        ({"TAILOR_PRODUCTION": "maybe"}, "production"),
        ({"TAILOR_MAX_FIRST": "0"}, "max_first"),
        ({"TAILOR_PRODUCTION": "true"}, "TAILOR_JWT_SECRET"),
        ({"TAILOR_CF_TUNE_BUDGET_S": "-1"}, "cf_tune_budget_s"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        load_settings(environ=env)


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "tailor.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="prot"):
        load_settings(cfg, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_production_turns_graphiql_off() -> None:
    s = load_settings(environ={"TAILOR_PRODUCTION": "1", "TAILOR_JWT_SECRET": "x" * 40})
    assert not s.graphiql_enabled


def test_cf_tuning_budget_reaches_the_model_stores(tmp_path: Path) -> None:
    from gateway.wiring import model_stores

    default = load_settings(environ={"TAILOR_DATA_DIR": str(tmp_path)})
    assert model_stores(default).tune_budget_s == 60.0
    untuned = load_settings(
        environ={"TAILOR_DATA_DIR": str(tmp_path), "TAILOR_CF_TUNE_BUDGET_S": "0"}
    )
    assert model_stores(untuned).tune_budget_s == 0.0

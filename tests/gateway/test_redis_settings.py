"""The Redis tier's settings: off by default (nothing of it runs), errors name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SettingsError, load_settings
from gateway.wiring import redis_config, redis_tier
from tests.conftest import Gateway


def test_unset_means_the_embedded_tier() -> None:
    settings = load_settings(environ={})
    assert settings.redis_url is None and redis_tier(settings) is None
    assert settings.artifacts_root == settings.data_dir


async def test_an_embedded_gateway_reports_no_redis(gateway: Gateway) -> None:
    assert gateway.app.state.runtime.redis is None
    ready = (await gateway.client.get("/readyz")).json()
    assert ready["status"] == "ready" and "redis" not in ready


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TAILOR_REDIS_URL": "redis://cache.internal:6380/2",
        "TAILOR_REDIS_PREFIX": "shop1:",
        "TAILOR_REDIS_MAX_BYTES": "1000000",
        "TAILOR_REDIS_MAX_ENTRY_BYTES": "10000",
        "TAILOR_ARTIFACTS_DIR": str(tmp_path / "shared"),
    }
    settings = load_settings(environ=env)
    config = redis_config(settings)
    assert (config.prefix, config.max_bytes, config.max_entry_bytes) == (
        "shop1:",
        1_000_000,
        10_000,
    )
    assert settings.artifacts_root == tmp_path / "shared"
    tier = redis_tier(settings)
    assert tier is not None and tier.channel == "shop1:events"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TAILOR_REDIS_URL": "http://127.0.0.1:6379"}, "redis_url"),
        ({"TAILOR_REDIS_PREFIX": "has space"}, "redis_prefix"),
        ({"TAILOR_REDIS_MAX_BYTES": "0"}, "redis_max_bytes"),
        ({"TAILOR_REDIS_TIMEOUT_S": "-1"}, "redis_timeout_s"),
        ({"TAILOR_REDIS_LOCK_WAIT_S": "-1"}, "redis_lock_wait_s"),
        (
            {"TAILOR_REDIS_MAX_BYTES": "100", "TAILOR_REDIS_MAX_ENTRY_BYTES": "1000"},
            "redis_max_entry_bytes",
        ),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ=env)

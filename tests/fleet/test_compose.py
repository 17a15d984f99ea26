"""docker-compose.yml cannot be started here; it is kept consistent with the code: the fleet's
services exist with healthchecks, every TAILOR_* name is a setting, every command is a real
`tailor` command, and the settings it gives the processes are the ones the fleet tests use."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli.main import build_parser
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
FLEET_SERVICES = {"postgres", "redis", "nats", "gateway-a", "gateway-b", "worker", "proxy"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _environments(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: {str(k): str(v) for k, v in (svc.get("environment") or {}).items()}
        for name, svc in compose["services"].items()
    }


def test_the_fleet_services_are_there_with_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services.keys() >= FLEET_SERVICES
    for name in FLEET_SERVICES:
        check = services[name].get("healthcheck")
        assert check and check["test"], f"{name} has no healthcheck"
    for replica in ("gateway-a", "gateway-b"):
        assert services[replica]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    # The gateways answer /readyz behind the proxy, which load-balances over both replicas.
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "gateway-a:8000" in nginx and "gateway-b:8000" in nginx and "proxy_cache " in nginx


def test_every_tailor_variable_is_a_setting_and_parses(compose: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(Settings)}
    for name, env in _environments(compose).items():
        tailor = {k: v for k, v in env.items() if k.startswith("TAILOR_")}
        for key in tailor:
            assert key[len("TAILOR_") :].lower() in fields, f"{name}: {key} is not a setting"
        if tailor:
            # The values parse as settings (the secret is supplied at `docker compose up`).
            values = {**tailor, "TAILOR_JWT_SECRET": "x" * 48}
            settings = load_settings(environ=values)
            assert settings.event_stream_url == "nats://nats:4222"


def test_the_fleet_runs_on_the_shared_tier(compose: dict[str, Any]) -> None:
    from gateway.wiring import shared_tier_missing

    env = _environments(compose)["gateway-a"]
    settings = load_settings(environ={**env, "TAILOR_JWT_SECRET": "x" * 48})
    assert shared_tier_missing(settings) == []
    # The worker applies the stream; the replicas only publish to it.
    assert settings.event_stream_inline_consumer is False
    assert _environments(compose)["worker"] == env


def test_every_command_is_a_tailor_command(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for _name, svc in compose["services"].items():
        command = svc.get("command")
        if command and command[0] == "tailor":
            parser.parse_args(command[1:])  # exits (fails the test) on an unknown command
        check = (svc.get("healthcheck") or {}).get("test") or []
        if len(check) > 1 and check[1] == "tailor":
            parser.parse_args(check[2:])
    assert compose["services"]["worker"]["command"] == ["tailor", "worker"]


def test_the_fleet_tests_use_the_same_stream_settings(compose: dict[str, Any]) -> None:
    """The settings the fleet tests give their processes are the ones compose sets."""
    from tests.fleet.conftest import StreamNames

    test_keys = set(StreamNames("S", "s.x", "c").env())
    compose_keys = {k for k in _environments(compose)["gateway-a"] if re.match("TAILOR_EVENT_", k)}
    assert test_keys <= compose_keys | {"TAILOR_EVENT_STREAM_ACK_WAIT_S"}

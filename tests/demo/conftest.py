from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from demo import WorldSummary, generate_world

END = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@dataclass(frozen=True)
class LoadedWorld:
    """A generated world read back from its files, as an importer would see it."""

    summary: WorldSummary
    items: list[dict[str, Any]]
    users: list[dict[str, Any]]
    events: list[dict[str, Any]]
    personas: dict[str, str]


def load_world(summary: WorldSummary) -> LoadedWorld:
    def lines(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    return LoadedWorld(
        summary=summary,
        items=lines(summary.items_path),
        users=lines(summary.users_path),
        events=lines(summary.events_path),
        personas=json.loads(summary.personas_path.read_text(encoding="utf-8")),
    )


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> LoadedWorld:
    """One small world shared by the read-only tests (generated once per run, ~1-2 s)."""
    out = tmp_path_factory.mktemp("demo_world")
    return load_world(generate_world(out, seed=7, n_users=400, n_items=800, days=60, end=END))

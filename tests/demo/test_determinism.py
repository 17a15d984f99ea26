"""Same seed, sizes and end -> byte-identical files; anything else -> different files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from demo import InvalidWorldParameters, generate_world
from tests.demo.conftest import END

FILES = ("items.jsonl", "users.jsonl", "events.ndjson", "personas.json")
SMALL = {"n_users": 60, "n_items": 120, "days": 30, "end": END}


def _bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in FILES}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = generate_world(tmp_path / "a", seed=11, **SMALL)  # type: ignore[arg-type]
    second = generate_world(tmp_path / "b", seed=11, **SMALL)  # type: ignore[arg-type]
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    assert first.n_events == second.n_events > 0


def test_different_seed_changes_every_file(tmp_path: Path) -> None:
    generate_world(tmp_path / "a", seed=11, **SMALL)  # type: ignore[arg-type]
    generate_world(tmp_path / "b", seed=12, **SMALL)  # type: ignore[arg-type]
    a, b = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    for name in FILES:
        assert a[name] != b[name], name


def test_naive_end_is_utc_and_default_end_is_the_last_full_hour(tmp_path: Path) -> None:
    aware = generate_world(tmp_path / "aware", seed=3, **SMALL)  # type: ignore[arg-type]
    naive = generate_world(
        tmp_path / "naive", seed=3, n_users=60, n_items=120, days=30, end=END.replace(tzinfo=None)
    )
    assert _bytes(tmp_path / "aware") == _bytes(tmp_path / "naive")
    assert naive.end == aware.end == END

    before = datetime.now(UTC)
    summary = generate_world(tmp_path / "now", seed=3, n_users=20, n_items=40, days=14)
    assert summary.end.minute == summary.end.second == summary.end.microsecond == 0
    assert before - timedelta(hours=1) < summary.end <= datetime.now(UTC)
    assert summary.end - summary.start == timedelta(days=14)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 3}, "n_users"),
        ({"n_items": 10}, "n_items"),
        ({"days": 7}, "days"),
        ({"seed": -1}, "seed"),
    ],
)
def test_rejects_worlds_it_cannot_build(
    tmp_path: Path, kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(InvalidWorldParameters, match=message):
        generate_world(tmp_path, end=END, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "events.ndjson").exists()

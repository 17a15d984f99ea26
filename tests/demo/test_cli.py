"""``python -m demo.world OUT_DIR`` writes a world and prints what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.world import main

REPO = Path(__file__).resolve().parents[2]


def test_main_writes_world_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "world"
    code = main(
        [str(out), "--seed", "5", "--users", "40", "--items", "80", "--days", "20",
         "--end", "2026-11-26T14:00:00Z"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    n_events = len((out / "events.ndjson").read_text().splitlines())
    assert f"wrote 80 items, 40 users, {n_events} events" in printed
    assert len(json.loads((out / "personas.json").read_text())) == 40


def test_main_rejects_bad_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--users", "2"])
    assert exit_info.value.code == 2
    assert "n_users must be >= 4" in capsys.readouterr().err


def test_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo.world", str(tmp_path), "--users", "8", "--items", "40",
         "--days", "14", "--end", "2026-01-01T00:00:00"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "wrote 40 items, 8 users" in done.stdout
    assert "RuntimeWarning" not in done.stderr
    assert (tmp_path / "items.jsonl").exists()

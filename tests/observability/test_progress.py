"""Progress of long commands when output is not a terminal: periodic one-line progress in the
logs and a summary line at the end (a real ``tailor import`` and ``tailor train index``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from observability.progress import LogProgress
from tests.upstream.conftest import REPO

N_ITEMS = 6000


def tailor(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", *args],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TAILOR_DATA_DIR": str(tmp_path / "var"),
            "TAILOR_ENCODER": "hashing",
            "TAILOR_PROGRESS_INTERVAL_S": "0.02",
            "TAILOR_LOG_FORMAT": "text",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a real gateway / CLI process
def test_train_index_prints_periodic_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"i{k}",
                    "title": f"item {k} " + " ".join(f"word{(k * j) % 97}" for j in range(40)),
                    "categories": ["Shoes" if k % 2 else "Bags"],
                }
            )
            + "\n"
            for k in range(N_ITEMS)
        )
    )
    done = tailor(tmp_path, "import", "items", str(items))
    assert done.returncode == 0, done.stderr
    assert re.search(rf"import items: done {N_ITEMS:,} in [\d.]+s \(", done.stderr), done.stderr

    done = tailor(tmp_path, "train", "index")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    periodic = [
        line
        for line in lines
        if re.search(rf"tailor.progress: encode items: [\d,]+/{N_ITEMS:,} \(\d+%\) ", line)
    ]
    assert len(periodic) >= 2, done.stderr
    assert all("/s, ETA " in line for line in periodic)
    counts = [int(re.search(r"items: ([\d,]+)/", line)[1].replace(",", "")) for line in periodic]  # type: ignore[index]
    assert counts == sorted(counts)
    (summary,) = [line for line in lines if "encode items: done" in line]
    assert re.search(rf"encode items: done {N_ITEMS:,} in [\d.]+s \([\d,.]+/s\)", summary)
    assert "index v000001" in done.stderr  # the command's own result line
    assert not any("faiss.loader" in line for line in lines)  # loader noise is silenced


def test_log_progress_without_a_count_still_reports() -> None:
    ticks = iter([0.0, 5.0, 12.5])
    progress = LogProgress("train segments", None, interval_s=3600, clock=lambda: next(ticks))
    assert progress.line(5.0) == "train segments: running for 5s"
    assert progress.finish() == "train segments: done in 5.0s"
    counted = LogProgress("import", 200, interval_s=3600, clock=lambda: 0.0)
    counted.advance(50)
    assert counted.line(10.0) == "import: 50/200 (25%) 5.00/s, ETA 30s"
    counted.finish()

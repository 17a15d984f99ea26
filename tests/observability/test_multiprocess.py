"""``PROMETHEUS_MULTIPROC_DIR``: the families of several worker processes add up in a scrape of
any one of them (what ``--workers N`` needs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.upstream.conftest import REPO

WORKER = """
from observability import metrics
metrics.child(metrics.HTTP_REQUESTS, "/graphql", "Item", "200").inc({n})
metrics.child(metrics.HTTP_DURATION, "/graphql", "Item", "200").observe(0.01)
metrics.count_ingest(["accepted"] * {n})
"""
SCRAPE = """
import sys
from observability import metrics
sys.stdout.write(metrics.exposition().decode())
"""


def run(code: str, mp_dir: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_add_up_in_one_scrape(tmp_path: Path) -> None:
    for n in (3, 4):
        run(WORKER.format(n=n), tmp_path)
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one file set per worker process
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(run(SCRAPE, tmp_path))
        for s in family.samples
    }
    labels = (("operation", "Item"), ("route", "/graphql"), ("status", "200"))
    assert samples[("tailor_http_requests_total", labels)] == 7
    assert samples[("tailor_http_request_duration_seconds_count", labels)] == 2
    assert samples[("tailor_ingest_events_total", (("outcome", "accepted"),))] == 7

"""Two real ``tailor serve`` processes on their own ports sharing a data dir and the real Redis:
a hash registered on A runs on B, a purge on A evicts B within a bound, a user's event on A
changes B's answer, and a version trained once (``tailor train index``) is served by both."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalog.importer import validate_item
from gateway.security.auth import issue_token
from gateway.settings import load_settings
from gateway.wiring import build_services
from tests.conftest import NOW, SECRET, item_rows
from tests.redis_support import REDIS_URL, free_port, redis_prefix

__all__ = ["redis_prefix"]

ROOT = Path(__file__).resolve().parents[2]
ITEM = '{ item(id: "i1") { id title } }'
ME = "{ me { id profile { events } } }"


def _env(data_dir: Path, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TAILOR_DATA_DIR": str(data_dir),
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_ENCODER": "hashing",
        "TAILOR_REDIS_URL": REDIS_URL,
        "TAILOR_REDIS_PREFIX": prefix,
        "TAILOR_MODEL_POLL_S": "3600",  # only the announcement can make them swap in time
        "TAILOR_RATE_LIMIT_PER_S": "0",
        "TAILOR_LOG_LEVEL": "warning",
        **extra,
    }


@contextlib.contextmanager
def servers(env: dict[str, str], n: int) -> Iterator[list[str]]:
    """``n`` ``tailor serve`` processes started together (start-up is mostly imports)."""
    ports = [free_port() for _ in range(n)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 120
        for base, proc in zip(bases, procs, strict=True):
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, "tailor serve exited"
                assert time.monotonic() < deadline, "tailor serve did not get ready"
                time.sleep(0.1)
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def wait_until(fn: object, timeout: float = 5.0) -> float:
    started = time.perf_counter()
    while not fn():  # type: ignore[operator]
        assert time.perf_counter() - started < timeout, f"not within {timeout}s"
        time.sleep(0.002)
    return time.perf_counter() - started


@pytest.mark.slow
def test_two_processes_share_the_tier(tmp_path: Path, redis_prefix: str) -> None:
    data_dir = tmp_path / "var"
    env = _env(data_dir, redis_prefix)
    with servers(env, 2) as (a, b):
        # Items written by an import after both started (their polls are an hour away).
        services = build_services(load_settings(data_dir=data_dir, encoder="hashing"))
        services.store.upsert_items([validate_item(r, NOW) for r in item_rows(5)])
        services.store.close()
        trained = subprocess.run(
            [sys.executable, "-m", "gateway.cli.main", "train", "index"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert trained.returncode == 0, trained.stderr + trained.stdout

        def index(base: str) -> str | None:
            version: str | None = httpx.get(f"{base}/readyz").json()["models"]["item_index"]
            return version

        wait_until(lambda: index(a) == index(b) == "v000001", timeout=10)

        # A persisted query registered on A runs on B.
        digest = hashlib.sha256(ITEM.encode()).hexdigest()
        ext = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}})
        assert httpx.get(f"{a}/graphql", params={"extensions": ext, "query": ITEM}).json() == {
            "data": {"item": {"id": "i1", "title": "Item 1"}}
        }
        on_b = httpx.get(f"{b}/graphql", params={"extensions": ext})
        assert on_b.json() == {"data": {"item": {"id": "i1", "title": "Item 1"}}}
        assert on_b.headers["x-cache"] == "HIT"  # A's answer, through Redis

        # A purge on A evicts B's copy.
        assert httpx.get(f"{b}/graphql", params={"extensions": ext}).headers["x-cache"] == "HIT"
        admin = {"authorization": f"Bearer {issue_token(SECRET, 'ops', scopes=('admin',))}"}
        purged = httpx.post(f"{a}/admin/purge", json={"tags": ["item:i1"]}, headers=admin)
        assert purged.status_code == 200
        delay = wait_until(
            lambda: (
                httpx.get(f"{b}/graphql", params={"extensions": ext}).headers["x-cache"] == "MISS"
            ),
            timeout=2,
        )
        assert delay < 1.0

        # A user's event accepted by A changes what B answers them.
        u1 = {"authorization": f"Bearer {issue_token(SECRET, 'u1')}"}
        for _ in range(3):
            before = httpx.get(f"{b}/graphql", params={"query": ME}, headers=u1)
        assert before.headers["x-cache"] == "HIT"
        assert before.json()["data"]["me"] == {"id": "u1", "profile": None}
        event = [{"messageId": "m1", "type": "view", "itemId": "i1"}]
        assert httpx.post(f"{a}/v1/events", json=event, headers=u1).status_code == 200
        wait_until(
            lambda: (
                httpx.get(f"{b}/graphql", params={"query": ME}, headers=u1).json()["data"]["me"][
                    "profile"
                ]
                == {"events": 1}
            ),
            timeout=2,
        )

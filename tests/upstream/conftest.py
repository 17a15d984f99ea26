"""Upstream fixtures: a real upstream service process on loopback (``gateway.cli.upstream_demo``)
with fault injection, and the gateway app pointed at an upstream (real or ``MockTransport``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.cli.upstream_demo import wait_until_serving
from tests.conftest import SECRET, FakeClock, Gateway

REPO = Path(__file__).resolve().parents[2]
BASE_TS = 1_700_000_000.0


def upstream_items(n: int, prefix: str = "u") -> list[dict[str, Any]]:
    """Upstream catalog rows ``u1..un``; ``updated_at`` one second apart (sync order)."""
    return [
        {
            "id": f"{prefix}{k}",
            "title": f"Upstream item {k}",
            "categories": ["Shoes" if k % 2 else "Bags"],
            "price": float(k),
            "updated_at": BASE_TS + k,
        }
        for k in range(1, n + 1)
    ]


def upstream_users(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"c{k}",
            "traits": {"tier": "gold" if k % 2 else "silver"},
            "email": f"c{k}@example.com",
            "updated_at": BASE_TS + k,
        }
        for k in range(1, n + 1)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class UpstreamProcess:
    url: str
    proc: subprocess.Popen[bytes]

    def faults(self, **faults: Any) -> None:
        httpx.post(f"{self.url}/_faults", json=faults, timeout=5).raise_for_status()

    def reset(self) -> None:
        self.faults(reset=True)

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/_stats", timeout=5).json())

    def put(self, **rows: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/_data", json=rows, timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def upstream_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = tmp_path_factory.mktemp("upstream-world")
    (world / "items.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in upstream_items(250))
    )
    (world / "users.jsonl").write_bytes(
        b"".join(orjson.dumps(r) + b"\n" for r in upstream_users(20))
    )
    return world


@pytest.fixture(scope="session")
def upstream_process(upstream_world: Path) -> Iterator[UpstreamProcess]:
    """One real upstream service process for the session (faults are reset per test)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.upstream_demo",
            "--dir",
            str(upstream_world),
            "--port",
            str(port),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, proc)
    except RuntimeError:
        proc.kill()
        raise
    try:
        yield UpstreamProcess(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def upstream(upstream_process: UpstreamProcess) -> UpstreamProcess:
    upstream_process.reset()
    return upstream_process


FAST = dict(
    upstream_connect_timeout_s=0.5,
    upstream_read_timeout_s=0.5,
    upstream_total_timeout_s=1.0,
    upstream_retries=2,
    upstream_backoff_s=0.01,
    upstream_backoff_max_s=0.05,
    upstream_breaker_failures=3,
    upstream_breaker_reset_s=5.0,
    upstream_cache_ttl_s=60.0,
    upstream_stale_if_error_s=600.0,
)


async def open_gateway(
    tmp_path: Path,
    clock: FakeClock,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    **settings: Any,
) -> AsyncIterator[Gateway]:
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=clock,
        edge_cache=False,
        upstream_transport=transport,
        **{**FAST, **settings},
    )
    async with app.router.lifespan_context(app):
        asgi = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=asgi, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, tmp_path / "var")

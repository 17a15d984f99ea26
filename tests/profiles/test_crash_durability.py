"""An acknowledged event survives SIGKILL of the gateway, exactly once, and no batch is half-written."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.security.auth import issue_token
from tests.conftest import SECRET

BATCH = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_DATA_DIR": str(data),
        "TAILOR_PORT": str(port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not become ready")


async def _ingest_until_killed(
    port: int, proc: subprocess.Popen[bytes], acked: set[str], sent: list[str]
) -> None:
    token = issue_token(SECRET, "collector", scopes=["service"])
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"authorization": f"Bearer {token}"},
        timeout=10,
    ) as client:

        async def worker(w: int) -> None:
            n = 0
            while True:
                ids = [f"w{w}-b{n}-e{k}" for k in range(BATCH)]
                sent.extend(ids)
                events = [
                    {
                        "messageId": m,
                        "type": "view",
                        "userId": f"u{k % 7}",
                        "itemId": f"i{k}",
                        "sessionId": f"s{w}",
                    }
                    for k, m in enumerate(ids)
                ]
                try:
                    r = await client.post("/v1/events", json=events)
                except httpx.HTTPError:
                    return  # the server died mid-request: these are unacknowledged
                if r.status_code != 200:
                    return
                assert r.json()["accepted"] == BATCH
                acked.update(ids)
                n += 1

        async def killer() -> None:
            while len(acked) < 3000:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)

        await asyncio.gather(killer(), *(worker(w) for w in range(4)))


@pytest.mark.slow
async def test_sigkill_during_ingestion_loses_no_acknowledged_event(tmp_path: Path) -> None:
    data = tmp_path / "var"
    port = _free_port()
    proc = _start(data, port)
    acked: set[str] = set()
    sent: list[str] = []
    try:
        await _ingest_until_killed(port, proc, acked, sent)
    finally:
        proc.kill()
        proc.wait()
    assert len(acked) >= 3000
    # Restart on the same data dir: it recovers and serves.
    port2 = _free_port()
    proc2 = _start(data, port2)
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port2}/graphql", json={"query": "{ trending(first: 1) { score } }"}
        )
        assert r.status_code == 200
    finally:
        proc2.terminate()
        proc2.wait(timeout=30)
    conn = sqlite3.connect(data / "tailor.db")
    rows = conn.execute("SELECT message_id, count(*) FROM events GROUP BY message_id").fetchall()
    stored = {m for m, _ in rows}
    assert all(c == 1 for _, c in rows)
    assert acked <= stored, f"{len(acked - stored)} acknowledged events lost"
    # Batches are atomic: every stored batch is complete.
    batches: dict[str, int] = {}
    for m in stored:
        batches[m.rsplit("-e", 1)[0]] = batches.get(m.rsplit("-e", 1)[0], 0) + 1
    assert set(batches.values()) == {BATCH}
    # Profiles committed with their events: the per-user view counts match the log.
    for user, count in conn.execute(
        "SELECT profile_key, count(*) FROM events GROUP BY profile_key"
    ):
        import json

        (state,) = conn.execute(
            "SELECT state FROM profiles WHERE profile_key=?", (user,)
        ).fetchone()
        assert json.loads(state)["counts"]["view"] == count

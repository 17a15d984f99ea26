"""Real `tailor serve` / `tailor worker` processes for the fleet tests (the tree under test is on
PYTHONPATH, so the subprocesses import it, not an installed copy)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from gateway.security.auth import issue_token
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parents[2]


def tailor(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_ENCODER": "hashing",
        **env,
    }
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli.main", *args], env=full, stdout=out, stderr=out
    )


def launch(data: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `tailor serve` (see :func:`ready`)."""
    return tailor(["serve"], {"TAILOR_DATA_DIR": str(data), "TAILOR_PORT": str(port), **env}, log)


def ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Wait until the gateway on ``port`` answers /readyz 200."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"gateway did not become ready: {log.read_text()[-2000:]}")


def serve(data: Path, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return ready(launch(data, port, env, log), port, log)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def service_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {issue_token(SECRET, 'collector', scopes=['service'])}"}


async def stream_events(
    port: int, acked: set[str], *, prefix: str, until: asyncio.Event, batch: int = 50
) -> None:
    """Four clients post batches until ``until`` is set or the gateway stops answering; the
    messageIds of every acknowledged batch go into ``acked``."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers=service_headers(), timeout=10
    ) as client:

        async def one(w: int) -> None:
            n = 0
            while not until.is_set():
                ids = [f"{prefix}{w}-b{n}-e{k}" for k in range(batch)]
                events = [
                    {"messageId": m, "type": "view", "userId": f"u{k % 7}", "itemId": f"i{k}"}
                    for k, m in enumerate(ids)
                ]
                try:
                    r = await client.post("/v1/events", json=events)
                except httpx.HTTPError:
                    return  # the gateway died mid-request: this batch is unacknowledged
                if r.status_code != 200:
                    return
                assert r.json()["accepted"] == batch
                acked.update(ids)
                n += 1

        await asyncio.gather(*(one(w) for w in range(4)))


def stored_events(db: Path) -> Counter[str]:
    conn = sqlite3.connect(db)
    try:
        return Counter(dict(conn.execute("SELECT message_id, count(*) FROM events GROUP BY 1")))
    finally:
        conn.close()


def profile_counts_match_the_log(db: Path) -> dict[str, Any]:
    """Per profile: (views in its state, view events in the log) where the two differ."""
    conn = sqlite3.connect(db)
    try:
        wrong = {}
        for key, count in conn.execute(
            "SELECT profile_key, count(*) FROM events WHERE type='view' GROUP BY profile_key"
        ):
            (state,) = conn.execute(
                "SELECT state FROM profiles WHERE profile_key=?", (key,)
            ).fetchone()
            views = json.loads(state)["counts"].get("view", 0)
            if views != count:
                wrong[key] = (views, count)
        return wrong
    finally:
        conn.close()


async def gql(client: httpx.AsyncClient, query: str, user: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {issue_token(SECRET, user)}"} if user else {}
    r = await client.post("/graphql", json={"query": query}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def converged(at_least: int, *bases: str) -> None:
    """Wait until the stream is drained and every instance has seen the same events (at least
    ``at_least``; both started together), by applying them itself or by replaying another
    instance's applied notes (its /readyz)."""
    reports: list[Any] = []
    async with httpx.AsyncClient() as c:
        for _ in range(200):
            reports = [(await c.get(f"{b}/readyz")).json()["event_stream"] for b in bases]
            seen = [r["applied_here"] + r["replayed_from_others"] for r in reports]
            if all(r["lag"] == 0 for r in reports) and len(set(seen)) == 1 and seen[0] >= at_least:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the instances did not converge: {reports}")

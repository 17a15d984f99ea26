"""`tailor serve --workers 2` on the shared tier (stream + Redis): both uvicorn worker processes
serve, and an event accepted by either shows in every answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.fleet.conftest import StreamNames, free_port
from tests.fleet.processes import gql, service_headers, stop, tailor

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.mark.slow
async def test_two_uvicorn_workers_on_the_shared_tier(
    tmp_path: Path, stream_names: StreamNames
) -> None:
    prefix = f"tailortest:{uuid.uuid4().hex[:12]}:"
    port = free_port()
    env = {
        **stream_names.env(),
        "TAILOR_REDIS_URL": REDIS_URL,
        "TAILOR_REDIS_PREFIX": prefix,
        "TAILOR_RATE_LIMIT_PER_S": "0",
    }
    log = tmp_path / "serve.log"
    proc = tailor(
        ["serve", "--workers", "2", "--port", str(port), "--data-dir", str(tmp_path / "var")],
        env,
        log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        origins: set[str] = set()
        async with httpx.AsyncClient(base_url=base) as c:
            while time.monotonic() < deadline:
                assert proc.poll() is None, log.read_text()[-2000:]
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            r = await c.post(
                "/v1/events",
                json=[{"messageId": "w-1", "type": "view", "userId": "wu", "itemId": "i1"}],
                headers=service_headers(),
            )
            assert r.json()["accepted"] == 1
            # Fresh connections land on either worker; every answer soon shows the event.
            seen = 0
            while seen < 10 or len(origins) < 2:
                assert time.monotonic() < deadline, f"answers from {origins}, events {seen}"
                async with httpx.AsyncClient(base_url=base) as fresh:
                    profile = (await gql(fresh, "{ me { profile { events } } }", user="wu"))["me"]
                    ready = (await fresh.get("/readyz")).json()["event_stream"]
                origins.add(ready["origin"])
                seen = seen + 1 if (profile["profile"] or {}).get("events") == 1 else 0
                await asyncio.sleep(0.05)
            # /metrics of either worker sums both (multiprocess mode, set up by serve): the one
            # accepted event is counted once whichever worker answers the scrape.
            scraped: set[str] = set()
            while len(scraped) < 2:
                assert time.monotonic() < deadline, f"scrapes answered by {scraped}"
                async with httpx.AsyncClient(base_url=base) as fresh:
                    text = (await fresh.get("/metrics")).text
                    scraped.add((await fresh.get("/readyz")).json()["event_stream"]["origin"])
                accepted = [
                    sample.value
                    for family in text_string_to_metric_families(text)
                    if family.name == "tailor_ingest_events"
                    for sample in family.samples
                    if sample.name == "tailor_ingest_events_total"
                    and sample.labels.get("outcome") == "accepted"
                ]
                assert accepted == [1.0], text
        assert (tmp_path / "var" / "metrics-multiproc").is_dir()
    finally:
        stop(proc)
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

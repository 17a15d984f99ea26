"""Two gateways sharing a data dir and the real Redis (``redis_url``): the shared response level,
APQ, single-flight across instances, purge fan-out within a measured bound, read-your-writes of
a user's events across instances, model announcements, and Redis outages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cache import CacheScope
from cache.redis_tier import decode_entry
from gateway.app import create_app
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_edge_helpers import BACKEND, EDGE_SCHEMA, apq_params, bearer, seed_items
from tests.redis_support import REDIS_URL, PrivateRedis, private_redis, redis_prefix

__all__ = ["private_redis", "redis_prefix"]

ROOT = Path(__file__).resolve().parents[2]
COUNTER = "{ counter }"
ME = "{ me { id profile { events } } }"


@contextlib.asynccontextmanager
async def gateway(data_dir: Path, clock: FakeClock, **overrides: Any) -> AsyncIterator[Gateway]:
    settings: dict[str, Any] = {"max_concurrency": 0, "rate_limit_per_s": 0, **overrides}
    app = create_app(
        data_dir=data_dir,
        jwt_secret=SECRET,
        clock=clock,
        schema=EDGE_SCHEMA,
        segment_of=lambda key: BACKEND.segments.get(key),
        encoder="hashing",
        **settings,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, data_dir)


@pytest.fixture
async def fleet(
    tmp_path: Path, clock: FakeClock, redis_prefix: str
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    BACKEND.calls, BACKEND.fail, BACKEND.gate = 0, False, None
    BACKEND.segments = {"u1": "3", "u2": "5"}
    shared = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix, "redis_lock_wait_s": 5.0}
    async with (
        gateway(tmp_path / "var", clock, **shared) as a,
        gateway(tmp_path / "var", clock, **shared) as b,
    ):
        yield a, b


async def get(gw: Gateway, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await gw.client.get("/graphql", params={"query": query}, headers=headers or {})


def held_locally(gw: Gateway, key: str) -> bool:
    return gw.app.state.edge.responses.lookup(key)[0] is not None


async def until(condition: Any, timeout: float = 5.0) -> float:
    """Seconds until ``condition()`` holds (fails after ``timeout``)."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            pytest.fail(f"not within {timeout}s")
        await asyncio.sleep(0.0005)
    return time.perf_counter() - started


async def test_a_miss_on_one_instance_is_filled_from_the_other(
    fleet: tuple[Gateway, Gateway],
) -> None:
    a, b = fleet
    first = await get(a, COUNTER)
    assert first.headers["x-cache"] == "MISS" and BACKEND.calls == 1
    a.clock.advance(5)
    other = await get(b, COUNTER)
    assert other.headers["x-cache"] == "HIT"
    assert other.content == first.content and other.headers["etag"] == first.headers["etag"]
    assert other.headers["age"] == "5"  # the age of the first store, not of the copy
    assert BACKEND.calls == 1
    assert b.app.state.edge.responses.stats.shared_hits == 1
    # Stale-while-revalidate windows hold on the copy: served stale, refreshed once.
    a.clock.advance(70)
    stale = await get(b, COUNTER)
    assert stale.headers["x-cache"] == "STALE"
    await until(lambda: BACKEND.calls == 2)
    await until(lambda: not b.app.state.edge.responses.revalidating(stale.headers["x-cache-key"]))
    assert (await get(a, COUNTER)).headers["x-cache"] == "STALE"  # A's own copy is stale too
    await until(lambda: not a.app.state.edge.responses.revalidating(stale.headers["x-cache-key"]))
    # A's refresh adopted the fresh copy B wrote: no third execution.
    assert BACKEND.calls == 2
    assert (await get(a, COUNTER)).json() == {"data": {"counter": 2}}


async def test_private_answers_never_reach_redis_and_segments_stay_apart(
    fleet: tuple[Gateway, Gateway], redis_prefix: str
) -> None:
    a, b = fleet
    seed_items(a)
    u1 = bearer(a, "u1")
    for _ in range(3):
        assert (await get(a, ME, u1)).status_code == 200
    assert (await get(a, ME, u1)).headers["x-cache"] == "HIT"  # cached in A's own tier
    # (A new operation is first keyed PUBLIC: its SEGMENT answer is stored from the 2nd on.)
    for _ in range(2):
        seg3 = await get(a, "{ segmentOffer }", u1)
        seg5 = await get(b, "{ segmentOffer }", bearer(b, "u2"))
    assert seg3.json() == {"data": {"segmentOffer": "offer:3"}}
    assert seg5.json() == {"data": {"segmentOffer": "offer:5"}}
    client = redis.Redis.from_url(REDIS_URL)
    stored = [decode_entry(client.get(k)) for k in client.scan_iter(f"{redis_prefix}r:*")]
    client.close()
    assert stored, "segment answers are shared"
    assert all(e.policy.scope is not CacheScope.PRIVATE for e in stored)
    assert not any(b'"u1"' in e.body for e in stored)
    # u1's segment answer on B comes from Redis; u2 (another segment) never got it.
    assert (await get(b, "{ segmentOffer }", bearer(b, "u1"))).json() == seg3.json()


async def test_a_hash_registered_on_one_instance_is_known_on_the_other(
    fleet: tuple[Gateway, Gateway],
) -> None:
    a, b = fleet
    query = "{ dynamic(age: 30) }"
    unknown = await b.client.get("/graphql", params=apq_params(query))
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await a.client.get("/graphql", params=apq_params(query, with_query=True))
    assert registered.json() == {"data": {"dynamic": "age 30"}}
    known = await b.client.get("/graphql", params=apq_params(query))
    assert known.json() == {"data": {"dynamic": "age 30"}}
    assert known.headers["x-cache"] == "HIT"  # and its answer came from Redis too


async def test_one_instance_computes_an_identical_miss(fleet: tuple[Gateway, Gateway]) -> None:
    a, b = fleet
    BACKEND.gate = asyncio.Event()
    first = asyncio.create_task(get(a, COUNTER))
    await until(lambda: BACKEND.calls == 1)
    second = asyncio.create_task(get(b, COUNTER))
    await asyncio.sleep(0.1)
    assert not second.done()  # B waits for A's answer instead of executing
    BACKEND.gate.set()
    answers = await asyncio.gather(first, second)
    assert BACKEND.calls == 1
    assert answers[0].content == answers[1].content == b'{"data":{"counter":1}}'


async def test_purges_reach_every_instance_within_a_bound(
    fleet: tuple[Gateway, Gateway],
) -> None:
    a, b = fleet
    seed_items(a)
    admin = bearer(a, "ops", "admin")
    item_q = '{ item(id: "i1") { id title } }'
    delays = []
    for _ in range(20):
        key = (await get(a, item_q)).headers["x-cache-key"]
        assert (await get(b, item_q)).headers["x-cache"] in ("HIT", "MISS")
        assert held_locally(a, key) and held_locally(b, key)
        started = time.perf_counter()
        r = await a.client.post("/admin/purge", json={"tags": ["item:i1"]}, headers=admin)
        assert r.status_code == 200 and r.json()["purged"] == 1
        await until(lambda k=key: not held_locally(b, k), timeout=2.0)
        delays.append(time.perf_counter() - started)
        # After the purge neither instance (nor Redis) still serves the old answer.
        assert (await get(b, item_q)).headers["x-cache"] == "MISS"
    delays.sort()
    p50, p99 = statistics.median(delays), delays[-1]
    assert p99 < 0.5, f"fan-out p50 {p50 * 1000:.1f} ms, max {p99 * 1000:.1f} ms"


async def test_a_users_event_on_one_instance_drops_their_answers_on_the_other(
    fleet: tuple[Gateway, Gateway],
) -> None:
    a, b = fleet
    seed_items(a)
    u1 = bearer(a, "u1")
    for _ in range(3):
        await get(b, ME, u1)
    cached = await get(b, ME, u1)
    assert cached.headers["x-cache"] == "HIT"
    assert cached.json()["data"]["me"] == {"id": "u1", "profile": None}
    key = cached.headers["x-cache-key"]
    r = await a.client.post(
        "/v1/events", json=[{"messageId": "m1", "type": "view", "itemId": "i1"}], headers=u1
    )
    assert r.status_code == 200
    delay = await until(lambda: not held_locally(b, key), timeout=2.0)
    assert delay < 0.5
    assert (await get(b, ME, u1)).json()["data"]["me"] == {"id": "u1", "profile": {"events": 1}}


@pytest.mark.slow  # a `tailor train index` process
async def test_a_trained_version_is_served_by_every_instance(
    tmp_path: Path, clock: FakeClock, redis_prefix: str
) -> None:
    """``tailor train index`` in its own process announces the version; both gateways (whose
    own poll is an hour away) swap to it promptly, from the shared artifact directory."""
    shared = {
        "redis_url": REDIS_URL,
        "redis_prefix": redis_prefix,
        "model_poll_s": 3600.0,
        "artifacts_dir": tmp_path / "artifacts",
    }
    async with (
        gateway(tmp_path / "a", clock, **shared) as a,
        gateway(tmp_path / "b", clock, **shared) as b,
    ):
        assert a.services.content.version is None and b.services.content.version is None
        seed_items(a)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TAILOR_REDIS_URL": REDIS_URL,
            "TAILOR_REDIS_PREFIX": redis_prefix,
            "TAILOR_ARTIFACTS_DIR": str(tmp_path / "artifacts"),
            "TAILOR_ENCODER": "hashing",
            "TAILOR_JWT_SECRET": SECRET,
        }
        cmd = [sys.executable, "-m", "gateway.cli.main", "train", "index"]
        done = await asyncio.to_thread(
            subprocess.run,
            [*cmd, "--data-dir", str(tmp_path / "a")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        assert "announced the new version" in done.stdout + done.stderr
        await until(lambda: a.services.content.version is not None, timeout=10)
        await until(lambda: b.services.content.version is not None, timeout=10)
        assert a.services.content.version == b.services.content.version == "v000001"


async def test_without_redis_the_gateway_answers_degrades_and_recovers(
    tmp_path: Path, clock: FakeClock, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    BACKEND.calls, BACKEND.fail, BACKEND.gate = 0, False, None
    settings = {"redis_url": private_redis.url, "redis_retry_s": 0.1, "redis_timeout_s": 0.2}
    with caplog.at_level(logging.WARNING, logger="tailor.redis"):
        async with gateway(tmp_path / "var", clock, **settings) as gw:
            # Nothing listens on the port: answers come from the in-process tier.
            assert (await get(gw, COUNTER)).headers["x-cache"] == "MISS"
            for _ in range(5):
                assert (await get(gw, COUNTER)).headers["x-cache"] == "HIT"
            ready = await gw.client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded" and ready.json()["degraded"] == ["redis"]
            assert ready.json()["redis"]["available"] is False
            assert _gauge(await gw.client.get("/metrics"), "tailor_redis_up") == 0.0
            down = [r for r in caplog.records if "unavailable" in r.message]
            assert len(down) == 1  # once, not per request or per retry
            # Redis comes up: the instance finds it by itself.
            private_redis.start()
            await until(lambda: gw.app.state.runtime.redis.available, timeout=5)
            assert (await gw.client.get("/readyz")).json()["status"] == "ready"
            assert _gauge(await gw.client.get("/metrics"), "tailor_redis_up") == 1.0
            assert (await get(gw, "{ dynamic(age: 40) }")).headers["x-cache"] == "MISS"
            client = redis.Redis.from_url(private_redis.url)
            assert len(list(client.scan_iter("tailor:r:*"))) == 1  # the shared level works
            client.close()
            # Redis dies under traffic: still answering, degraded again, logged once more.
            private_redis.kill()
            for _ in range(5):
                assert (await get(gw, COUNTER)).status_code == 200
                assert (await get(gw, "{ dynamic(age: 41) }")).status_code == 200
            await until(lambda: not gw.app.state.runtime.redis.available, timeout=5)
            assert (await gw.client.get("/readyz")).json()["degraded"] == ["redis"]
            assert len([r for r in caplog.records if "unavailable" in r.message]) == 2
            private_redis.start()
            await until(lambda: gw.app.state.runtime.redis.available, timeout=5)


def _gauge(scrape: httpx.Response, name: str, **labels: str) -> float:
    """One sample of a /metrics answer (the test fails when it is absent)."""
    for family in text_string_to_metric_families(scrape.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not in /metrics")

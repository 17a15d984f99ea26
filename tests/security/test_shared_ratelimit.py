"""Rate limits shared by every instance through the real Redis on 127.0.0.1:6379 (a key prefix
of this test run's own, deleted afterwards): two apps hold one limit between them; without
Redis each instance limits on its own, and an unreachable Redis falls back to that."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from gateway.app import create_app
from gateway.security.auth import issue_token
from gateway.settings import SettingsError
from tests.conftest import SECRET, FakeClock

REDIS_URL = "redis://127.0.0.1:6379/0"
QUERY = {"query": "{ trending(first: 1) { score } }"}


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"tailor-test:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # fail, never skip: the issue names the real Redis
        pytest.fail(f"Redis is not answering on {REDIS_URL}: {exc}")
    yield name
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)
    client.close()


async def instances(
    stack: AsyncExitStack, tmp_path: Path, n: int, **settings: Any
) -> list[httpx.AsyncClient]:
    """``n`` apps, each with a client calling from the same IP address."""
    clients = []
    for i in range(n):
        app = create_app(
            data_dir=tmp_path / f"var{i}",
            jwt_secret=SECRET,
            encoder="hashing",
            clock=FakeClock(),
            **settings,
        )
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
        clients.append(
            await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://tailor.test")
            )
        )
    return clients


async def statuses(clients: list[httpx.AsyncClient], rounds: int) -> list[int]:
    out = []
    for _ in range(rounds):
        for c in clients:
            out.append((await c.post("/graphql", json=QUERY)).status_code)
    return out


async def test_two_instances_share_one_limit(tmp_path: Path, prefix: str) -> None:
    async with AsyncExitStack() as stack:
        a, b = await instances(
            stack,
            tmp_path,
            2,
            redis_url=REDIS_URL,
            rate_limit_redis_prefix=prefix,
            rate_limit_burst=4,
            rate_limit_per_s=0.01,  # 4 per 400 s: no refill during the test
        )
        got = await statuses([a, b], 4)  # a, b, a, b, ...
        assert got[:4] == [200, 200, 200, 200]
        assert got[4:] == [429, 429, 429, 429]  # the budget is spent on both
        limited = await b.post("/graphql", json=QUERY)
        assert int(limited.headers["retry-after"]) >= 1
        # Another client (a signed-in user) has its own budget.
        token = issue_token(SECRET, "u-other")
        r = await a.post("/graphql", json=QUERY, headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}*")
    assert keys, "the limits lived in Redis under the run's prefix"


async def test_without_redis_each_instance_limits_on_its_own(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        a, b = await instances(stack, tmp_path, 2, rate_limit_burst=2, rate_limit_per_s=0.01)
        got = await statuses([a, b], 3)
        assert got == [200, 200, 200, 200, 429, 429]  # two each


async def test_redis_down_falls_back_to_local_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncExitStack() as stack:
        (a,) = await instances(
            stack,
            tmp_path,
            1,
            redis_url="redis://127.0.0.1:1/0",  # nothing listens there
            rate_limit_burst=2,
            rate_limit_per_s=0.01,
        )
        got = await statuses([a], 3)
        assert got == [200, 200, 429]
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # logged once


def test_a_bad_url_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="redis_url"):
        create_app(data_dir=tmp_path, jwt_secret=SECRET, redis_url="http://127.0.0.1:6379")

"""UpstreamClient over httpx.MockTransport: retries, backoff, breaker transitions, deadlines."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from tests.conftest import FakeClock
from upstream.breaker import CircuitBreaker
from upstream.client import UpstreamClient, remaining_deadline, upstream_deadline
from upstream.types import (
    BreakerState,
    CircuitOpen,
    DeadlineExceeded,
    UpstreamConfig,
    UpstreamPayloadError,
    UpstreamStatusError,
    UpstreamTimeout,
)


def make_client(
    handler: object,
    clock: FakeClock | None = None,
    sleeps: list[float] | None = None,
    **cfg: object,
) -> UpstreamClient:
    config = UpstreamConfig(
        "catalog",
        "http://up.test",
        **{"retries": 3, "backoff_base_s": 0.1, "backoff_max_s": 0.3, **cfg},
    )  # type: ignore[arg-type]

    async def sleep(s: float) -> None:
        if sleeps is not None:
            sleeps.append(s)

    return UpstreamClient(
        config,
        transport=httpx.MockTransport(handler),  # type: ignore[arg-type]
        clock=clock or FakeClock(),
        sleep=sleep,
        rng=lambda: 1.0,
    )


async def test_get_retries_5xx_with_exponential_backoff_then_succeeds() -> None:
    statuses = [500, 503, 200]
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        status = statuses[len(sent) - 1]
        return httpx.Response(status, json={"items": []} if status == 200 else {"e": 1})

    sleeps: list[float] = []
    client = make_client(handler, sleeps=sleeps)
    assert await client.get_json("/items", {"ids": "a"}) == {"items": []}
    assert len(sent) == 3 and client.stats.retries == 2
    assert sleeps == [0.1, 0.2]  # base * 2**attempt (rng=1.0: the top of the jitter range)
    assert client.breaker.state is BreakerState.CLOSED
    await client.aclose()


async def test_jitter_draws_between_half_and_full_delay() -> None:
    client = make_client(lambda r: httpx.Response(200, json={}))
    client._rng = lambda: 0.0
    assert client._backoff(0) == pytest.approx(0.05)
    assert client._backoff(5) == pytest.approx(0.15)  # capped at backoff_max_s, then halved
    await client.aclose()


async def test_non_idempotent_and_4xx_calls_are_not_retried() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(500 if request.method == "POST" else 404)

    client = make_client(handler)
    with pytest.raises(UpstreamStatusError) as post:
        await client.request("POST", "/items", json={"a": 1})
    assert post.value.status == 500 and sent == ["POST"]
    with pytest.raises(UpstreamStatusError) as get:
        await client.get_json("/items")
    assert get.value.status == 404 and sent == ["POST", "GET"]
    # A 4xx is about the request, not the upstream's health.
    assert client.breaker.snapshot()["failures"] == 0
    await client.aclose()


async def test_breaker_opens_fails_fast_probes_half_open_and_closes() -> None:
    clock = FakeClock()
    healthy = False
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(200, json={"ok": True}) if healthy else httpx.Response(502)

    client = make_client(handler, clock, retries=0, breaker_failures=3, breaker_reset_s=10.0)
    for _ in range(3):
        with pytest.raises(UpstreamStatusError):
            await client.get_json("/items")
    assert client.breaker.state is BreakerState.OPEN and sent == 3
    with pytest.raises(CircuitOpen):
        await client.get_json("/items")
    assert sent == 3  # failed fast: nothing sent
    assert client.snapshot()["state"] == "open"
    clock.advance(10)
    assert client.breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(UpstreamStatusError):  # the probe fails: open again
        await client.get_json("/items")
    assert client.breaker.state is BreakerState.OPEN and sent == 4
    clock.advance(10)
    healthy = True
    assert await client.get_json("/items") == {"ok": True}
    assert client.breaker.state is BreakerState.CLOSED and sent == 5
    await client.aclose()


def test_half_open_lets_one_probe_through_at_a_time() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("crm", failures=1, reset_s=5, clock=clock)
    breaker.record_failure()
    assert not breaker.allow()
    clock.advance(5)
    assert breaker.allow() and not breaker.allow()  # the second caller fails fast
    breaker.release()  # the probe was cancelled: the slot frees up
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


async def test_request_deadline_bounds_the_call_and_its_retries() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        return httpx.Response(200, json={})

    client = UpstreamClient(
        UpstreamConfig(
            "catalog", "http://up.test", total_timeout_s=60, retries=5, read_timeout_s=60
        ),
        transport=httpx.MockTransport(slow),
    )
    assert remaining_deadline() is None
    started = time.monotonic()
    with upstream_deadline(1.0):
        left = remaining_deadline()
        assert left is not None and 0 < left <= 1.0
        with upstream_deadline(30):  # a nested scope never extends the caller's deadline
            assert (remaining_deadline() or 0) <= 1.0
        with pytest.raises(UpstreamTimeout):
            await client.get_json("/items")
    # The 1 s deadline, not the client's own 60 s limits (nor the upstream's hour); the bound is
    # generous because it is wall clock on a possibly loaded machine.
    assert time.monotonic() - started < 20
    assert remaining_deadline() is None
    await client.aclose()


async def test_spent_deadline_fails_without_sending() -> None:
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(200, json={})

    client = make_client(handler)
    with upstream_deadline(0.0005):
        await asyncio.sleep(0.002)
        with pytest.raises(DeadlineExceeded):
            await client.get_json("/items")
    assert sent == 0 and client.stats.fast_failures == 1
    await client.aclose()


async def test_malformed_json_is_a_logged_failure_and_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        return httpx.Response(
            200, content=b'{"items": [', headers={"content-type": "application/json"}
        )

    client = make_client(handler)
    with (
        caplog.at_level(logging.ERROR, logger="tailor.upstream"),
        pytest.raises(UpstreamPayloadError),
    ):
        await client.get_json("/items")
    assert sent == 1
    assert "malformed JSON from GET /items" in caplog.text
    assert client.breaker.snapshot()["failures"] == 1
    await client.aclose()

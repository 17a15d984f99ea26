"""Resource exhaustion (issue 21, items 3, 4 and 8): memory held by what clients send, slow
bodies holding execution slots, and rate limits dodged through ``X-Forwarded-For``.

Each test fails on the code before the fix: caches and memos bounded in entries kept every
client-written query text and variables blob; a slowly sent body held a concurrency slot; the
left-most (client-written) ``X-Forwarded-For`` hop chose the rate-limit bucket, and uvicorn
believed that header from 127.0.0.1 whatever the settings said.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.edge.apq import PersistedQueries, sha256_hex
from gateway.edge.headers import Memo
from gateway.graphql.types import GraphQLParams
from gateway.security.guard import ClientKey, GuardConfig, RequestGuard
from gateway.settings import SettingsError, load_settings
from tests.conftest import SECRET
from tests.security.conftest import NORMAL_QUERY, code_of, open_gateway

TRENDING = "{ trending(first: 1) { score } }"
MiB = 1024 * 1024


def _traced_now() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _big(n: int, tag: str) -> str:
    """A distinct string of ``n`` characters (distinct so no cache can share it)."""
    return (tag + uuid.uuid4().hex) * (n // (len(tag) + 32)) + "x" * (n % (len(tag) + 32))


# --- item 3: memory is bounded in bytes -----------------------------------------------------


async def test_a_burst_of_large_requests_does_not_stay_in_memory(tmp_path: Path) -> None:
    """300 queries with ~400 kB of unused variables (POST), 200 GETs with ~50 kB of unused
    variables in the URL and 40 distinct ~60 kB documents: after the burst and a collection
    the Python heap is back near its baseline. Before the fix the edge's key memo kept every
    variables blob (65,536 entries), the GET memo every long URL's params (4,096 entries), and
    the parse cache and the APQ hash memo every query text (2,048 / 4,096 entries): ~200 MB."""
    # Configured to accept large variables (the default refuses them): none may stay.
    async with open_gateway(
        tmp_path / "var", rate_limit_per_s=0, max_variables_bytes=1_000_000
    ) as gw:
        # Warm every path once, so one-off allocations (schema caches, lazy imports) are not
        # counted as growth.
        for _ in range(3):
            r = await gw.gql(TRENDING, {"unused": _big(1000, "w")})
            assert r.status_code == 200, r.text
            url = urlencode({"query": TRENDING, "variables": '{"u": "' + _big(9000, "g") + '"}'})
            status, _, body = await _call(gw.app, "GET", "/graphql", _no_body, [], url.encode())
            assert status == 200, body
            r = await gw.gql("#" + _big(20_000, "c") + "\n" + TRENDING)
            assert r.status_code == 200, r.text
        tracemalloc.start()
        try:
            baseline = _traced_now()
            for _ in range(300):
                r = await gw.gql(TRENDING, {"unused": _big(400_000, "v")})
                assert r.status_code == 200, r.text
            for _ in range(200):
                # Straight to the app: httpx's own URL parsing memoizes long URLs.
                variables = orjson.dumps({"unused": _big(50_000, "u")}).decode()
                url = urlencode({"query": TRENDING, "variables": variables}).encode()
                status, _, body = await _call(gw.app, "GET", "/graphql", _no_body, [], url)
                assert status == 200, body
            for _ in range(40):
                r = await gw.gql("#" + _big(60_000, "q") + "\n" + TRENDING)
                assert r.status_code == 200, r.text
            grown = _traced_now() - baseline
        finally:
            tracemalloc.stop()
        # The parse cache keeps those documents within its budget (~5 MB of them here); every
        # memo has its own few-MiB bound. The old code kept ~135 MB.
        assert grown < 16 * MiB, f"{grown / MiB:.1f} MiB still held after the burst"
        assert (await gw.gql(NORMAL_QUERY)).status_code == 200


async def test_the_parse_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", document_cache_max_bytes=MiB) as gw:
        for _ in range(30):
            r = await gw.gql("#" + _big(60_000, "d") + "\n" + TRENDING)
            assert r.status_code == 200, r.text
        documents = gw.app.state.runtime.graphql._documents
        assert documents.currsize <= MiB
        assert sum(len(q) for q in documents) <= MiB // 2  # the text counts twice, at least
        assert (await gw.gql(NORMAL_QUERY)).status_code == 200


async def test_query_and_variables_have_their_own_size_limits(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", max_variables_bytes=500_000) as gw:
        huge_comment = "#" + "x" * 900_000 + "\n" + TRENDING
        started = time.perf_counter()
        r = await gw.gql(huge_comment)
        assert time.perf_counter() - started < 0.5
        assert r.status_code == 413, r.text
        assert code_of(r.json()) == "PAYLOAD_TOO_LARGE"
        message = r.json()["errors"][0]["message"]
        assert "the query is 900" in message and "TAILOR_MAX_QUERY_BYTES" in message

        r = await gw.gql(TRENDING, {"unused": "y" * 600_000})
        assert r.status_code == 413, r.text
        assert code_of(r.json()) == "PAYLOAD_TOO_LARGE"
        assert "TAILOR_MAX_VARIABLES_BYTES" in r.json()["errors"][0]["message"]

        # over GET (longer than httpx builds URLs: straight to the app)
        query_string = urlencode({"query": "#" + "z" * 150_000 + "\n" + TRENDING}).encode()
        status, _, body = await _call(gw.app, "GET", "/graphql", _no_body, [], query_string)
        assert status == 413 and code_of(orjson.loads(body)) == "PAYLOAD_TOO_LARGE", body

        # Just under the limits is served.
        r = await gw.gql("#" + "x" * 99_000 + "\n" + TRENDING, {"unused": "y" * 490_000})
        assert r.status_code == 200 and "errors" not in r.json(), r.text

    with pytest.raises(SettingsError, match="max_query_bytes"):
        load_settings(environ={}, max_query_bytes=0)


async def test_a_long_document_is_parsed_off_the_event_loop(tmp_path: Path) -> None:
    """A 900 kB comment costs ~100 ms of CPU to lex; that CPU must not be the event loop's
    (before the fix the whole parse ran on the loop). Measured as the CPU time of the loop's
    thread (``time.thread_time``), which a busy machine does not inflate as it does wall time;
    the request's own work on the loop (JSON, hashing, execution) is a few ms."""
    async with open_gateway(tmp_path / "var", max_query_bytes=1_000_000) as gw:
        query = "#" + "x" * 900_000 + "\n" + TRENDING
        r = await gw.gql(TRENDING)  # warm: one-off costs of the first request
        assert r.status_code == 200
        gc.collect()
        gc.disable()  # a collection of a big test process is not the request's cost
        try:
            for _ in range(3):
                cpu = time.thread_time()
                r = await gw.gql(query + f"\n# {uuid.uuid4().hex}")
                cpu = time.thread_time() - cpu
                assert r.status_code == 200 and "errors" not in r.json(), r.text
                assert cpu < 0.04, f"{cpu * 1000:.0f} ms of the event loop's CPU for one request"
        finally:
            gc.enable()


def test_memos_are_bounded_in_bytes() -> None:
    memo: Memo[bytes, str] = Memo(1_000_000, max_bytes=1 * MiB)
    for i in range(100):
        memo[i.to_bytes(4, "big") * 25_000] = "v"  # 100 kB keys
    assert memo.nbytes <= 1 * MiB
    assert sum(len(k) for k in memo) <= 1 * MiB
    memo[b"k" * (2 * MiB)] = "too big for the whole budget"
    assert b"k" * (2 * MiB) not in memo


def test_persisted_queries_are_bounded_in_bytes() -> None:
    class NoStore:
        def get_persisted_query(self, sha256: str) -> str | None:
            return None

        def put_persisted_queries(self, rows: Any) -> int:
            return 0

    budget = 64 * 1024
    pq = PersistedQueries(NoStore(), max_bytes=budget)
    # Many tiny registrations: each costs its key and bookkeeping, not just its text.
    for i in range(5000):
        query = f"{{a{i}}}"
        ext = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(query)}}
        pq.resolve(GraphQLParams(query, None, None, ext))
    assert len(pq._registered) <= budget // 256
    # The text -> hash memo is keyed by client-written texts: bounded in bytes too.
    for _ in range(300):
        pq.resolve(GraphQLParams(_big(10_000, "h"), None, None, None))
    assert sum(len(q) for q in pq._hashes) <= budget


# --- item 4: slow bodies ----------------------------------------------------------------------


def _trickle(
    total: int, every_s: float, chunk: bytes = b"x"
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` that sends ``total`` bytes, ``len(chunk)`` every ``every_s``."""
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent >= total:
            await asyncio.sleep(3600)  # then nothing more: a client that went quiet
        await asyncio.sleep(every_s)
        piece = chunk[: total - sent]
        sent += len(piece)
        return {"type": "http.request", "body": piece, "more_body": sent < total}

    return receive


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _call(
    app: Any,
    method: str,
    path: str,
    receive: Any,
    headers: list[tuple[bytes, bytes]],
    query_string: bytes = b"",
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Drive an ASGI app directly; returns (status, headers, body)."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": [(b"host", b"tailor.test"), *headers],
        "client": ("192.0.2.10", 5000),
        "server": ("tailor.test", 80),
        "state": {},
    }
    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def _guard(config: GuardConfig, gate: asyncio.Event | None = None) -> RequestGuard:
    async def echo(request: Request) -> PlainTextResponse:
        body = await request.body()
        if gate is not None:
            await gate.wait()
        return PlainTextResponse(str(len(body)))

    routes = [Route("/x", echo, methods=["GET", "POST"])]
    routes.append(Route("/admin/x", echo, methods=["GET", "POST"]))
    return RequestGuard(Starlette(routes=routes), config=config, client_key=lambda s: None)


async def test_slow_bodies_do_not_hold_execution_slots() -> None:
    """Ten clients trickling bodies, two execution slots: other requests are still served, and
    the tricklers are cut off with 408 soon after the read deadline."""
    config = GuardConfig(
        rate_per_s=0, max_concurrency=2, timeout_s=5, body_read_timeout_s=0.4, reserve=0
    )
    guard = _guard(config)
    length = [(b"content-length", b"1000"), (b"content-type", b"application/json")]
    slow = [
        asyncio.create_task(_call(guard, "POST", "/x", _trickle(1000, 0.02), length))
        for _ in range(10)
    ]
    await asyncio.sleep(0.1)
    assert guard.reading == 10 and guard.in_flight == 0  # reading holds no slot
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://t"
    ) as client:
        answers = await asyncio.gather(*(client.post("/x", content=b"{}") for _ in range(6)))
    assert [r.status_code for r in answers] == [200] * 6
    assert [r.text for r in answers] == ["2"] * 6
    started = time.perf_counter()
    results = await asyncio.gather(*slow)
    assert time.perf_counter() - started < 1.0
    for status, headers, body in results:
        assert status == 408
        assert headers[b"connection"] == b"close"
        problem = orjson.loads(body)
        assert code_of(problem) == "REQUEST_TIMEOUT"
        assert "not received in time" in problem["errors"][0]["message"]
    assert guard.reading == 0 and guard.in_flight == 0


async def test_a_large_body_at_a_fair_rate_is_not_cut_off() -> None:
    """The deadline grows with the data received (a minimum rate, not a fixed time)."""
    config = GuardConfig(
        rate_per_s=0, max_concurrency=2, body_read_timeout_s=0.2, body_min_bytes_per_s=1024
    )
    guard = _guard(config)
    receive = _trickle(40_000, 0.02, b"y" * 4000)  # 10 chunks, 0.2 s, ~200 kB/s
    status, _, body = await _call(guard, "POST", "/x", receive, [(b"content-length", b"40000")])
    assert (status, body) == (200, b"40000")


async def test_bodies_over_the_limit_are_refused_before_a_slot() -> None:
    guard = _guard(GuardConfig(rate_per_s=0, max_concurrency=1, max_body=100))
    status, headers, body = await _call(
        guard, "POST", "/x", _trickle(10, 0), [(b"content-length", b"5000")]
    )
    assert status == 413 and code_of(orjson.loads(body)) == "PAYLOAD_TOO_LARGE"
    assert headers[b"connection"] == b"close"
    chunked = [(b"transfer-encoding", b"chunked")]
    status, _, body = await _call(guard, "POST", "/x", _trickle(500, 0, b"z" * 50), chunked)
    assert status == 413 and code_of(orjson.loads(body)) == "PAYLOAD_TOO_LARGE"


async def test_admin_traffic_keeps_a_reserve() -> None:
    gate = asyncio.Event()
    guard = _guard(GuardConfig(rate_per_s=0, max_concurrency=2, reserve=1), gate)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard), base_url="http://t"
    ) as client:
        busy = [asyncio.create_task(client.get("/x")) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert guard.in_flight == 2
        refused = await client.get("/x")
        assert refused.status_code == 503 and code_of(refused.json()) == "SERVICE_UNAVAILABLE"
        admin = asyncio.create_task(client.post("/admin/x", content=b"{}"))
        await asyncio.sleep(0.05)
        assert guard.in_flight == 3  # the reserved slot
        assert (await client.get("/admin/x")).status_code == 503  # the reserve is used up
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*busy, admin)] == [200, 200, 200]


async def test_slow_event_bodies_leave_the_gateway_serving(tmp_path: Path) -> None:
    """The real app: slow ``POST /v1/events`` bodies (the attack of the issue) beyond the
    concurrency limit, yet GraphQL, health and admin requests are answered."""
    async with open_gateway(
        tmp_path / "var", max_concurrency=3, body_read_timeout_s=0.5, rate_limit_per_s=0
    ) as gw:
        headers = [(b"content-length", b"200"), (b"content-type", b"application/json")]
        slow = [
            asyncio.create_task(_call(gw.app, "POST", "/v1/events", _trickle(200, 0.05), headers))
            for _ in range(12)
        ]
        await asyncio.sleep(0.15)
        assert (await gw.gql(NORMAL_QUERY)).status_code == 200
        assert (await gw.client.get("/healthz")).status_code == 200
        purge = await gw.client.post(
            "/admin/purge",
            json={"tags": ["type:Item"]},
            headers={"authorization": f"Bearer {gw.token('ops', 'admin')}"},
        )
        assert purge.status_code == 200, purge.text
        statuses = [status for status, _, _ in await asyncio.gather(*slow)]
        assert statuses == [408] * 12


# --- item 8: X-Forwarded-For ----------------------------------------------------------------

_counter = itertools.count()


def _spoofed() -> str:
    n = next(_counter)
    return f"10.{n % 250}.{n // 250 % 250}.{n % 7}, 66.{n % 200}.1.{n % 250}"


async def _hammer(client: httpx.AsyncClient, n: int, forwarded: Callable[[], str]) -> list[int]:
    return [
        (
            await client.post(
                "/graphql", json={"query": NORMAL_QUERY}, headers={"x-forwarded-for": forwarded()}
            )
        ).status_code
        for _ in range(n)
    ]


def _client(app: Any, peer: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://t"
    )


async def test_forwarded_for_is_keyed_on_the_right_most_untrusted_hop(tmp_path: Path) -> None:
    """Behind a trusted proxy the client is the hop the proxy appended: varying the hops to its
    left (which the client writes) does not buy a fresh bucket."""
    async with open_gateway(
        tmp_path / "var", trust_forwarded_for=True, rate_limit_per_s=0.001, rate_limit_burst=3
    ) as gw:
        async with _client(gw.app, "127.0.0.1") as proxy:
            statuses = await _hammer(proxy, 8, lambda: _spoofed() + ", 203.0.113.7")
            assert statuses == [200] * 3 + [429] * 5
            # another client behind the same proxy has its own bucket
            assert await _hammer(proxy, 1, lambda: "198.51.100.4") == [200]
            # hops of trusted proxies on the right are skipped (::1 is trusted by default)
            assert await _hammer(proxy, 1, lambda: "203.0.113.7, ::1") == [429]
        # A connection that is not from a trusted proxy: its X-Forwarded-For is ignored.
        async with _client(gw.app, "192.0.2.99") as direct:
            assert await _hammer(direct, 8, _spoofed) == [200] * 3 + [429] * 5


async def test_forwarded_for_is_ignored_unless_trusted(tmp_path: Path) -> None:
    async with (
        open_gateway(tmp_path / "var", rate_limit_per_s=0.001, rate_limit_burst=3) as gw,
        _client(gw.app, "127.0.0.1") as client,
    ):
        assert await _hammer(client, 6, _spoofed) == [200] * 3 + [429] * 3


async def test_trusted_proxies_take_networks(tmp_path: Path) -> None:
    async with (
        open_gateway(
            tmp_path / "var",
            trust_forwarded_for=True,
            trusted_proxies="10.0.0.0/8, 2001:db8::/32",
            rate_limit_per_s=0.001,
            rate_limit_burst=2,
        ) as gw,
        _client(gw.app, "10.1.2.3") as lb,
    ):
        hops = lambda: _spoofed() + ", 192.0.2.44, 10.9.9.9, 2001:db8::1"  # noqa: E731
        assert await _hammer(lb, 4, hops) == [200, 200, 429, 429]
        # 127.0.0.1 is no longer trusted: it is the client
        assert await _hammer(lb, 3, lambda: "192.0.2.44, 127.0.0.1") == [200, 200, 429]
    with pytest.raises(SettingsError, match="trusted_proxies"):
        load_settings(environ={}, trusted_proxies="10.0.0.0/8,proxy.internal")


def test_client_key_parses_forwarded_hops() -> None:
    key = ClientKey(SECRET, None, None, trust_forwarded_for=True)

    def of(peer: str, *xff: str) -> str | None:
        headers = [(b"x-forwarded-for", v.encode()) for v in xff]
        return key({"headers": headers, "client": (peer, 1)})

    assert of("127.0.0.1", "1.2.3.4, 5.6.7.8") == "ip:5.6.7.8"
    assert of("127.0.0.1", "1.2.3.4", "5.6.7.8:443") == "ip:5.6.7.8"  # two headers, a port
    assert of("127.0.0.1", "[2001:db8::7]:80") == "ip:2001:db8::7"
    assert of("127.0.0.1", "1.2.3.4, not-an-ip") == "ip:127.0.0.1"  # never the garbage
    assert of("127.0.0.1", "x" * 100_000) == "ip:127.0.0.1"
    assert of("127.0.0.1", "127.0.0.1, ::1") == "ip:127.0.0.1"  # all trusted
    assert of("192.0.2.1", "1.2.3.4") == "ip:192.0.2.1"  # not from a proxy


def test_serve_keeps_uvicorn_proxy_headers_off_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from gateway.cli.serve import serve

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    serve(load_settings(environ={}, data_dir=tmp_path, jwt_secret=SECRET))
    assert calls[-1]["proxy_headers"] is False
    serve(
        load_settings(
            environ={},
            data_dir=tmp_path,
            jwt_secret=SECRET,
            trust_forwarded_for=True,
            trusted_proxies="10.0.0.0/8",
        )
    )
    assert calls[-1]["proxy_headers"] is True
    assert calls[-1]["forwarded_allow_ips"] == ["10.0.0.0/8"]

"""Writes that do not go through the event stream reach the other gateways: the identify mutation
and `tailor import` commit to the store directly, then announce on the stream's applied notes like
a consumer does. Two gateway apps in this process share PostgreSQL (this session's database),
Redis (a key prefix of the test's own), the event stream (a stream of its own) and the artifact
directory (one segment model); each has its own in-memory trending, segments and caches."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from catalog.importer import validate_item
from gateway.app import create_app
from gateway.cli.common import open_services
from gateway.cli.main import main
from gateway.security.auth import issue_token
from gateway.settings import load_settings
from gateway.wiring import build_services
from profiles import imports
from tests.conftest import NOW, SECRET, item_rows
from tests.fleet.conftest import delete_stream, free_port, new_stream_names
from tests.pg import pg_url, truncate
from tests.redis_support import REDIS_URL, shared_redis

__all__ = ["pg_url"]

BOUND_S = 5.0
ME = "{ me { profile { events } segment { id } } }"


def seed(settings: dict[str, Any]) -> None:
    """Items, a dozen users of different habits and one anonymous visitor, and a segment model
    trained on them (written to the shared artifacts, loaded by both gateways at start)."""
    services = build_services(load_settings(environ={}, **settings))
    try:
        services.store.upsert_items([validate_item(r, NOW) for r in item_rows(8)])
        events = [
            {
                "messageId": f"seed-{u}-{n}",
                "type": "purchase" if n % (u % 3 + 2) == 0 else "view",
                "userId": f"seed{u}",
                "itemId": f"i{1 + (u + n) % 4}",
            }
            for u in range(12)
            for n in range(1 + u * 2)
        ]
        events += [
            {"messageId": f"visit-{n}", "type": "view", "anonymousId": "visitor", "itemId": "i2"}
            for n in range(3)
        ]
        assert services.ingest.ingest_sync(events).count("accepted") == len(events)
        services.segments.train()
    finally:
        services.ingest.stop()
        services.store.close()


Pair = tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, Any]]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> AsyncIterator[Pair]:
    """One pair of gateways for the module (their start and stop are most of its time)."""
    truncate(pg_url)
    base: dict[str, Any] = {
        "data_dir": tmp_path_factory.mktemp("direct") / "var",
        "jwt_secret": SECRET,
        "encoder": "hashing",
        "database_url": pg_url,
    }
    seed(base)
    names = new_stream_names()
    prefix = f"tailortest:{uuid.uuid4().hex[:12]}:"
    settings: dict[str, Any] = {
        **base,
        **names.settings(),
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "trending_cache_s": 0,
        "rate_limit_per_s": 0,
        "model_poll_s": 3600,
    }
    try:
        async with contextlib.AsyncExitStack() as stack:
            clients = []
            for _ in range(2):
                app = create_app(**settings)
                await stack.enter_async_context(app.router.lifespan_context(app))
                transport = httpx.ASGITransport(app=app)
                client = httpx.AsyncClient(transport=transport, base_url="http://t")
                clients.append(await stack.enter_async_context(client))
            yield clients[0], clients[1], settings
    finally:
        await delete_stream(names)
        r = shared_redis()
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


async def gql(c: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None) -> Any:
    r = await c.post("/graphql", json={"query": query}, headers=headers or {})
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    return r.json()["data"]


async def within(bound_s: float, check: Callable[[], Awaitable[bool]]) -> None:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < bound_s, "not within the bound"
        await asyncio.sleep(0.02)


async def replayed(c: httpx.AsyncClient) -> int:
    return int((await c.get("/readyz")).json()["event_stream"]["replayed_from_others"])


@pytest.mark.asyncio(loop_scope="module")
def counted(
    pair: Pair, before: tuple[int, int], *, a: int, b: int
) -> Callable[[], Awaitable[bool]]:
    """Each gateway replayed exactly so many more events from the others' notes."""

    async def check() -> bool:
        now = await replayed(pair[0]), await replayed(pair[1])
        assert now[0] - before[0] <= a and now[1] - before[1] <= b, (before, now)
        return now == (before[0] + a, before[1] + b)

    return check


@pytest.mark.asyncio(loop_scope="module")
async def test_an_identify_on_a_reaches_b_profile_and_segment(pair: Pair) -> None:
    a, b, _ = pair
    replayed_before = await replayed(a), await replayed(b)
    user = {"authorization": f"Bearer {issue_token(SECRET, 'newcomer')}"}
    visitor = {"x-anonymous-id": "visitor"}
    # B answers (and caches) the visitor's segment and the user's empty profile.
    assert (await gql(b, "{ me { segment { id } } }", visitor))["me"]["segment"] is not None
    assert (await gql(b, ME, user))["me"] == {"profile": None, "segment": None}

    done = await gql(a, 'mutation { identify(anonymousId: "visitor") { status } }', user | visitor)
    assert done["identify"]["status"] == "accepted"
    on_a = (await gql(a, ME, user))["me"]
    assert on_a["profile"] is not None and on_a["segment"] is not None

    async def merged_on_b() -> bool:
        return bool((await gql(b, ME, user))["me"] == on_a)

    await within(BOUND_S, merged_on_b)  # the profile cache's TTL is 30 s; segments have none
    gone = await gql(b, "{ me { segment { id } } }", visitor)
    assert gone["me"]["segment"] is None  # the anonymous profile left its segment on B too
    # B replayed the identify once; A skipped its own note.
    await within(BOUND_S, counted(pair, replayed_before, a=0, b=1))


@pytest.mark.asyncio(loop_scope="module")
async def test_tailor_import_reaches_both_gateways_trending_and_profiles(
    pair: Pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, settings = pair
    replayed_before = await replayed(a), await replayed(b)
    buyer = {"authorization": f"Bearer {issue_token(SECRET, 'imp0')}"}
    assert (await gql(b, ME, buyer))["me"]["profile"] is None  # cached on B
    counts = {"i7": 60, "i5": 40, "i6": 20}  # well above what the seed gave any item
    rows = [
        {
            "messageId": f"imp-{item}-{n}",
            "type": "purchase",
            "userId": f"imp{n % 20}",
            "itemId": item,
        }
        for item, count in counts.items()
        for n in range(count)
    ]
    bought = sum(1 for r in rows if r["userId"] == "imp0")
    path = tmp_path / "history.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    for key, value in settings.items():
        monkeypatch.setenv(f"TAILOR_{key.upper()}", str(value))
    assert await asyncio.to_thread(main, ["import", "events", str(path)]) == 0

    async def trending(c: httpx.AsyncClient) -> list[str]:
        found = await gql(c, "{ trending(first: 8) { item { id } } }")
        return [t["item"]["id"] for t in found["trending"]]

    async def both_trend() -> bool:
        return [(await trending(c))[:3] for c in (a, b)] == [list(counts)] * 2

    await within(BOUND_S, both_trend)
    assert await trending(a) == await trending(b)
    # Each gateway counted every imported event once (no gateway applied the import itself).
    await within(BOUND_S, counted(pair, replayed_before, a=len(rows), b=len(rows)))

    async def profile_on_b() -> bool:
        return bool((await gql(b, ME, buyer))["me"]["profile"] == {"events": bought})

    await within(BOUND_S, profile_on_b)


def test_an_import_with_the_stream_down_is_stored_and_its_notes_given_up_quickly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(
        environ={},
        data_dir=tmp_path,
        encoder="hashing",
        event_stream_url=f"nats://127.0.0.1:{free_port()}",
        event_stream_name="DOWN",
    )
    rows = [
        {"messageId": f"d{n}", "type": "view", "userId": f"u{n % 2}", "itemId": "i1"}
        for n in range(30)
    ]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    monkeypatch.setattr(imports, "BATCH", 10)  # three committed batches
    started = time.monotonic()
    with open_services(settings, role="import") as services:
        summary = imports.import_events(services.ingest, path)
        assert summary.accepted == 30 and services.store.count_events() == 30
    assert caplog.text.count("direct write(s) lost") == 3
    # One try at the stream, not one per batch: the later batches' notes are given up at once.
    assert caplog.text.count("lost: stream down") == 2 and time.monotonic() - started < 6

"""The gateway's own edge cache: HIT/MISS/STALE, Age, 304, SWR, stale-if-error, single-flight,
invalidation by events, purge by tag (and forwarding to a CDN)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.gateway.test_edge_helpers import BACKEND, bearer, edge, seed_items

__all__ = ["edge"]

COUNTER = "{ counter }"


async def get(gw: Gateway, query: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return await gw.client.get("/graphql", params={"query": query}, headers=headers or {})


async def test_hit_after_miss_with_age(edge: Gateway) -> None:
    first = await get(edge, COUNTER)
    assert first.headers["x-cache"] == "MISS"
    assert first.json() == {"data": {"counter": 1}}
    edge.clock.advance(12)
    second = await get(edge, COUNTER)
    assert second.headers["x-cache"] == "HIT"
    assert second.headers["age"] == "12"
    assert second.content == first.content
    assert BACKEND.calls == 1
    # Variables and Accept are part of the key; header-name case and JSON spelling are not.
    other = await edge.client.get(
        "/graphql",
        params={"query": COUNTER},
        headers={"accept": "application/graphql-response+json"},
    )
    assert other.headers["x-cache"] == "MISS"


async def test_if_none_match_answers_304(edge: Gateway) -> None:
    first = await get(edge, COUNTER)
    etag = first.headers["etag"]
    r = await get(edge, COUNTER, {"if-none-match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    assert r.headers["cache-control"] == first.headers["cache-control"]
    r = await get(edge, COUNTER, {"if-none-match": f'"other", W/{etag}'})
    assert r.status_code == 304
    r = await get(edge, COUNTER, {"if-none-match": '"other"'})
    assert r.status_code == 200 and r.content == first.content
    # Never for answers that are not cacheable.
    BACKEND.fail = True
    me = await get(edge, "{ me { id } counter }", {"if-none-match": "*"})
    assert me.status_code == 200 and me.headers["cache-control"] == "no-store"


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(edge: Gateway) -> None:
    await get(edge, COUNTER)  # counter: max-age 60, swr 30, sie 300
    edge.clock.advance(70)
    stale = await get(edge, COUNTER)
    assert stale.headers["x-cache"] == "STALE"
    assert stale.json() == {"data": {"counter": 1}}
    assert stale.headers["age"] == "70"
    for _ in range(20):  # let the background refresh run
        await asyncio.sleep(0)
        if BACKEND.calls == 2 and not edge.app.state.edge.responses.revalidating(
            stale.headers["x-cache-key"]
        ):
            break
    assert BACKEND.calls == 2
    fresh = await get(edge, COUNTER)
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.json() == {"data": {"counter": 2}}


async def test_stale_if_error_serves_the_old_answer_when_resolvers_fail(edge: Gateway) -> None:
    await get(edge, COUNTER)
    BACKEND.fail = True
    edge.clock.advance(100)  # past max-age + swr (90), inside stale-if-error (360)
    r = await get(edge, COUNTER)
    assert r.headers["x-cache"] == "STALE"
    assert r.json() == {"data": {"counter": 1}}
    assert BACKEND.calls == 2  # it did try
    edge.clock.advance(300)  # past every window: the error itself, not stored
    r = await get(edge, COUNTER)
    assert r.json()["errors"][0]["message"] == "backend down"
    assert r.headers["cache-control"] == "no-store"
    BACKEND.fail = False
    r = await get(edge, COUNTER)
    assert r.headers["x-cache"] == "MISS" and r.json() == {"data": {"counter": 4}}


async def test_single_flight_200_concurrent_misses_execute_once(edge: Gateway) -> None:
    BACKEND.gate = asyncio.Event()
    stats = edge.app.state.edge.responses.stats
    tasks = [asyncio.ensure_future(get(edge, COUNTER)) for _ in range(200)]
    for _ in range(2000):
        if stats.misses >= 200:
            break
        await asyncio.sleep(0.001)
    assert stats.misses == 200
    BACKEND.gate.set()
    answers = await asyncio.gather(*tasks)
    assert BACKEND.calls == 1
    assert stats.coalesced == 199
    assert {r.content for r in answers} == {b'{"data":{"counter":1}}'}
    assert {r.headers["x-cache"] for r in answers} == {"MISS"}


async def test_private_answers_are_cached_per_user_and_dropped_by_their_events(
    edge: Gateway,
) -> None:
    seed_items(edge)
    q = "{ me { id profile { events } } }"
    track = 'mutation { track(events: [{messageId: "%s", type: view, itemId: "i1"}]) { accepted } }'
    u1, u2 = bearer(edge, "u1"), bearer(edge, "u2")
    assert (await get(edge, q, u1)).json()["data"]["me"] == {"id": "u1", "profile": None}
    # A new operation is first keyed as PUBLIC; its PRIVATE answer is not stored under that
    # key, and from then on the operation is keyed per user.
    assert (await get(edge, q, u1)).headers["x-cache"] == "MISS"
    r = await get(edge, q, u1)
    assert r.headers["x-cache"] == "HIT"
    assert (await get(edge, q, u2)).json()["data"]["me"]["id"] == "u2"
    for n in range(1, 4):
        t = await edge.client.post("/graphql", json={"query": track % f"m{n}"}, headers=u1)
        assert t.json() == {"data": {"track": {"accepted": 1}}}
        # Read-your-writes: the event purged u1's cached answer and cached profile.
        r = await get(edge, q, u1)
        assert r.headers["x-cache"] == "MISS"
        assert r.json()["data"]["me"] == {"id": "u1", "profile": {"events": n}}
    # u2's answer was not touched by u1's events.
    assert (await get(edge, q, u2)).headers["x-cache"] == "HIT"
    # Through REST too (the writer thread's listener).
    rest = await edge.client.post(
        "/v1/events", json=[{"messageId": "m9", "type": "view", "itemId": "i2"}], headers=u1
    )
    assert rest.status_code == 200
    assert (await get(edge, q, u1)).json()["data"]["me"]["profile"] == {"events": 4}


async def test_profile_cache_serves_reads_and_follows_invalidation(edge: Gateway) -> None:
    seed_items(edge)
    await edge.client.post(
        "/v1/events",
        json=[{"messageId": "m1", "type": "view", "itemId": "i1"}],
        headers=bearer(edge, "u1"),
    )
    profiles = edge.app.state.edge.profiles
    q = "{ me { profile { events } } }"
    await get(edge, q, bearer(edge, "u1"))
    assert "u1" in profiles
    await edge.client.post(
        "/v1/events",
        json=[{"messageId": "m2", "type": "view", "itemId": "i1"}],
        headers=bearer(edge, "u1"),
    )
    assert "u1" not in profiles


async def test_purge_by_tag_and_key_through_the_admin_route(edge: Gateway) -> None:
    seed_items(edge)
    item_q = '{ item(id: "i1") { id title } }'
    other_q = '{ item(id: "i2") { id title } }'
    first = await get(edge, item_q)
    assert "item:i1" in first.headers["surrogate-key"].split()
    assert "type:Item" in first.headers["surrogate-key"].split()
    await get(edge, other_q)
    assert (await get(edge, item_q)).headers["x-cache"] == "HIT"

    body: dict[str, Any] = {"tags": ["item:i1"]}
    denied = await edge.client.post("/admin/purge", json=body, headers=bearer(edge, "u1"))
    assert denied.status_code == 403 and denied.headers["cache-control"] == "no-store"
    assert (await edge.client.post("/admin/purge", json=body)).status_code == 401

    admin = bearer(edge, "ops", "admin")
    r = await edge.client.post("/admin/purge", json=body, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"purged": 1, "tags": ["item:i1"], "keys": [], "all": False, "cdn": None}
    assert (await get(edge, item_q)).headers["x-cache"] == "MISS"
    assert (await get(edge, other_q)).headers["x-cache"] == "HIT"

    key = (await get(edge, other_q)).headers["x-cache-key"]
    r = await edge.client.post("/admin/purge", json={"keys": [key]}, headers=admin)
    assert r.json()["purged"] == 1
    assert (await get(edge, other_q)).headers["x-cache"] == "MISS"

    bad = await edge.client.post("/admin/purge", json={"tags": "item:i1"}, headers=admin)
    assert bad.status_code == 400


async def test_item_updates_drop_answers_showing_them(edge: Gateway) -> None:
    seed_items(edge)
    q = '{ items(ids: ["i1", "i2"]) { id } }'
    await get(edge, q)
    edge.app.state.edge.items_changed(["i2"])
    assert (await get(edge, q)).headers["x-cache"] == "MISS"


async def test_a_model_swap_drops_recommendation_answers_only(edge: Gateway) -> None:
    seed_items(edge)
    await edge.client.post(
        "/v1/events",
        json=[{"messageId": f"m{k}", "type": "view", "itemId": "i1"} for k in range(3)],
        headers=bearer(edge, "u1"),
    )
    trending = "{ trending(first: 2) { item { id } } }"
    item = '{ item(id: "i2") { id } }'
    first = await get(edge, trending)
    assert first.json()["data"]["trending"] == [{"item": {"id": "i1"}}]
    assert "type:Recommendation" in first.headers["surrogate-key"].split()
    await get(edge, item)
    edge.app.state.edge.models_swapped()
    assert (await get(edge, trending)).headers["x-cache"] == "MISS"
    assert (await get(edge, item)).headers["x-cache"] == "HIT"


CDN_CALLS: list[httpx.Request] = []


def _cdn(request: httpx.Request) -> httpx.Response:
    CDN_CALLS.append(request)
    return httpx.Response(200, json={"ok": True})


@pytest.mark.parametrize(
    "edge",
    [
        {
            "cdn_purge_url": "https://cdn.test/purge",
            "cdn_purge_token": "cdn-secret",
            "cdn_transport": httpx.MockTransport(_cdn),
        }
    ],
    indirect=True,
)
async def test_purge_is_forwarded_to_the_cdn(edge: Gateway) -> None:
    CDN_CALLS.clear()
    r = await edge.client.post(
        "/admin/purge",
        json={"tags": ["item:i1", "type:Item"]},
        headers=bearer(edge, "ops", "admin"),
    )
    assert r.json()["cdn"] == {"forwarded": True, "status": 200}
    (sent,) = CDN_CALLS
    assert sent.url == "https://cdn.test/purge"
    assert sent.headers["authorization"] == "Bearer cdn-secret"
    assert json.loads(sent.content) == {"tags": ["item:i1", "type:Item"], "keys": []}


@pytest.mark.parametrize("edge", [{"edge_cache": False}], indirect=True)
async def test_cache_off_still_sends_headers(edge: Gateway) -> None:
    r1, r2 = await get(edge, COUNTER), await get(edge, COUNTER)
    assert r2.json() == {"data": {"counter": 2}}
    assert r2.headers["x-cache"] == "BYPASS"
    assert r1.headers["cache-control"].startswith("public, max-age=60")


async def test_runtime_hints_set_the_policy(edge: Gateway) -> None:
    r = await get(edge, "{ dynamic(age: 7) }")
    assert r.headers["cache-control"] == "public, max-age=7, s-maxage=7"
    r = await get(edge, "{ dynamic(age: 0) }")
    assert r.headers["cache-control"] == "no-store"

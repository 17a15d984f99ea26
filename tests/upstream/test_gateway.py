"""The gateway with upstream sources (httpx.MockTransport): GraphQL fields through the upstream,
one request per 100 items, local fallback, partial results, /readyz, purge."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.importer import validate_item
from tests.conftest import FakeClock, Gateway, item_rows
from tests.upstream.conftest import open_gateway, upstream_items, upstream_users


class Upstream:
    """Catalog and CRM behind one MockTransport; ``down`` makes both answer 503."""

    def __init__(self) -> None:
        self.items = {r["id"]: r for r in upstream_items(150)}
        self.users = {r["id"]: r for r in upstream_users(5)}
        self.requests: list[httpx.Request] = []
        self.down: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        host = request.url.host
        if host in self.down:
            return httpx.Response(503)
        kind, table = ("items", self.items) if host == "catalog.test" else ("users", self.users)
        ids = request.url.params["ids"].split(",")
        return httpx.Response(200, json={kind: [table[i] for i in ids if i in table]})

    def count(self, host: str) -> int:
        return sum(1 for r in self.requests if r.url.host == host)


@pytest.fixture
def up() -> Upstream:
    return Upstream()


@pytest.fixture
async def gw(tmp_path: Path, clock: FakeClock, up: Upstream) -> AsyncIterator[Gateway]:
    async for g in open_gateway(
        tmp_path,
        clock,
        transport=httpx.MockTransport(up),
        upstream_catalog_url="http://catalog.test",
        upstream_crm_url="http://crm.test",
    ):
        # Local rows: i1..i5 exist only here; u1 has a stale local copy.
        local = [validate_item(r, clock()) for r in item_rows(5)]
        local.append(validate_item({"id": "u1", "title": "Local copy of u1"}, clock()))
        g.services.store.upsert_items(local)
        yield g


ITEMS = "query($ids: [ID!]!) { items(ids: $ids) { id title price } }"


async def test_100_items_resolve_through_one_upstream_request(gw: Gateway, up: Upstream) -> None:
    ids = [f"u{k}" for k in range(1, 101)]
    r = await gw.gql(ITEMS, {"ids": ids})
    body = r.json()
    assert "errors" not in body
    assert [it["id"] for it in body["data"]["items"]] == ids
    assert body["data"]["items"][0]["title"] == "Upstream item 1"  # upstream wins over local
    assert up.count("catalog.test") == 1
    r = await gw.gql(ITEMS, {"ids": ids[:10]})
    assert up.count("catalog.test") == 1  # answered from the TTL cache


async def test_ids_unknown_upstream_fall_back_to_the_local_store(gw: Gateway, up: Upstream) -> None:
    r = await gw.gql(ITEMS, {"ids": ["u2", "i3", "missing"]})
    data = r.json()["data"]["items"]
    assert data[0]["title"] == "Upstream item 2"
    assert data[1]["title"] == "Item 3"
    assert data[2] is None


async def test_failed_upstream_nulls_only_the_affected_fields(gw: Gateway, up: Upstream) -> None:
    await gw.gql(ITEMS, {"ids": ["u8"]})  # cached before the outage
    up.down = {"catalog.test"}
    query = '{ a: item(id: "u7") { id title } b: item(id: "u8") { title } trending { score } }'
    body = (await gw.gql(query)).json()
    assert body["data"] == {"a": None, "b": {"title": "Upstream item 8"}, "trending": []}
    (err,) = body["errors"]
    assert err["path"] == ["a"] and err["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert "503" not in err["message"]  # the upstream's details stay in the log
    assert up.count("catalog.test") == 1 + 3  # the warm-up, then one call and two retries


async def test_traits_from_the_crm_with_pii_hashed_and_fail_alone(
    gw: Gateway, up: Upstream
) -> None:
    query = '{ user(id: "c1") { id traits } }'
    gw.services.merge_traits("c1", {"local": True})
    body = (await gw.gql(query, user="admin", scopes=("admin",))).json()
    traits = body["data"]["user"]["traits"]
    assert traits["tier"] == "gold"
    assert traits["email"].startswith("hmac-sha256:")  # a configured PII trait: hashed as stored
    up.down = {"crm.test"}
    gw.app.state.upstreams.crm.invalidate()
    body = (await gw.gql(query, user="admin", scopes=("admin",))).json()
    assert body["data"]["user"] == {"id": "c1", "traits": None}
    assert body["errors"][0]["path"] == ["user", "traits"]
    assert body["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"


async def test_serve_stale_through_graphql(gw: Gateway, up: Upstream, clock: FakeClock) -> None:
    await gw.gql(ITEMS, {"ids": ["u3"]})
    up.down = {"catalog.test"}
    clock.advance(300)  # past the 60 s TTL, inside the 600 s stale-if-error window
    body = (await gw.gql(ITEMS, {"ids": ["u3"]})).json()
    assert body == {"data": {"items": [{"id": "u3", "title": "Upstream item 3", "price": 3.0}]}}
    clock.advance(600)
    body = (await gw.gql('{ item(id: "u3") { id } }')).json()
    assert body["data"]["item"] is None
    assert body["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"


async def test_readyz_reports_breaker_state(gw: Gateway, up: Upstream) -> None:
    r = await gw.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["upstreams"]["catalog"]["state"] == "closed"
    up.down = {"catalog.test"}
    for k in range(3):  # 3 retries each; the breaker opens after 3 consecutive failures
        await gw.gql("query($id: ID!) { item(id: $id) { id } }", {"id": f"u{10 + k}"})
    r = await gw.client.get("/readyz")
    assert r.status_code == 200  # degraded fields, not an unready instance
    assert r.json()["upstreams"]["catalog"]["state"] == "open"
    assert r.json()["upstreams"]["crm"]["state"] == "closed"


async def test_admin_purge_drops_cached_upstream_answers(gw: Gateway, up: Upstream) -> None:
    await gw.gql(ITEMS, {"ids": ["u4", "u5"]})
    up.items["u4"] = {**up.items["u4"], "title": "Renamed"}
    admin = {"authorization": f"Bearer {gw.token('ops', 'admin')}"}
    r = await gw.client.post("/admin/purge", json={"tags": ["item:u4"]}, headers=admin)
    assert r.status_code == 200
    body = (await gw.gql(ITEMS, {"ids": ["u4", "u5"]})).json()
    assert [it["title"] for it in body["data"]["items"]] == ["Renamed", "Upstream item 5"]
    assert up.requests[-1].url.params["ids"] == "u4"


async def test_request_deadline_reaches_upstream_calls(tmp_path: Path, clock: FakeClock) -> None:
    import asyncio

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3600)
        return httpx.Response(200, json={"items": []})

    async for g in open_gateway(
        tmp_path,
        clock,
        transport=httpx.MockTransport(slow),
        upstream_catalog_url="http://catalog.test",
        upstream_total_timeout_s=30,
        upstream_read_timeout_s=30,
        # 3 s: the upstream deadline is 90% of it, so 0.3 s remain to answer before the guard's
        # 504 (ample even on a loaded machine).
        request_timeout_s=3.0,
    ):
        started = time.monotonic()
        r = await g.gql('{ item(id: "u1") { id } trending { score } }')
        elapsed = time.monotonic() - started
        # The upstream call gave up inside the request's 3 s budget (its own limit is 30 s, the
        # upstream would take an hour), early enough for a partial answer instead of the guard's
        # 504. The bound is generous: wall clock on a possibly loaded machine.
        assert elapsed < 15 and r.status_code == 200
        body: dict[str, Any] = r.json()
        assert body["data"] == {"item": None, "trending": []}
        assert body["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"

"""RecordSource over httpx.MockTransport: batching, single-flight, TTL cache, serve-stale,
field mapping and payload validation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from storage.types import ItemRecord, UserRecord
from tests.conftest import FakeClock
from upstream.client import UpstreamClient
from upstream.sources import catalog_source, crm_source, parse_field_map
from upstream.types import UpstreamConfig, UpstreamError, UpstreamPayloadError


class Catalog:
    """A MockTransport handler serving rows by ``ids``; counts requests, can fail or lag."""

    def __init__(self, rows: dict[str, dict[str, Any]], kind: str = "items") -> None:
        self.rows = rows
        self.kind = kind
        self.requests: list[httpx.Request] = []
        self.fail = False
        self.delay = 0.0
        self.transform: Callable[[dict[str, Any]], dict[str, Any]] = lambda r: r

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return httpx.Response(503)
        ids = request.url.params["ids"].split(",")
        return httpx.Response(
            200, json={self.kind: [self.transform(self.rows[i]) for i in ids if i in self.rows]}
        )


def rows(n: int) -> dict[str, dict[str, Any]]:
    return {
        f"u{k}": {"id": f"u{k}", "title": f"Up {k}", "price": float(k)} for k in range(1, n + 1)
    }


def source(handler: Catalog, clock: FakeClock, **cfg: Any) -> Any:
    config = UpstreamConfig(
        "catalog", "http://up.test", retries=0, cache_ttl_s=60, stale_if_error_s=600, **cfg
    )
    client = UpstreamClient(config, transport=httpx.MockTransport(handler), clock=clock)
    make = crm_source if handler.kind == "users" else catalog_source
    return make(client, clock=clock)


async def test_a_batch_of_100_ids_is_one_request_and_then_cached() -> None:
    clock, up = FakeClock(), Catalog(rows(150))
    src = source(up, clock)
    ids = [f"u{k}" for k in range(1, 101)]
    got = await src.fetch(ids)
    assert len(up.requests) == 1
    assert [r.id for r in got] == ids and all(isinstance(r, ItemRecord) for r in got)
    assert (await src.fetch(ids))[5].title == "Up 6"
    assert len(up.requests) == 1  # fresh in the TTL cache
    clock.advance(61)
    await src.fetch(ids[:3])
    assert len(up.requests) == 2  # expired: asked again, only for what is needed
    assert up.requests[1].url.params["ids"] == "u1,u2,u3"


async def test_more_ids_than_batch_max_split_into_parallel_requests() -> None:
    up = Catalog(rows(250))
    src = source(up, FakeClock(), batch_max=100)
    got = await src.fetch([f"u{k}" for k in range(1, 251)])
    assert len(up.requests) == 3 and all(isinstance(r, ItemRecord) for r in got)


async def test_identical_in_flight_requests_are_shared() -> None:
    up = Catalog(rows(10))
    up.delay = 0.05
    src = source(up, FakeClock())
    a, b, _ = await asyncio.gather(
        src.fetch(["u1", "u2"]), src.fetch(["u2", "u1"]), src.fetch(["u1", "u2"])
    )
    assert len(up.requests) == 1
    assert [r.id for r in a] == ["u1", "u2"] and [r.id for r in b] == ["u2", "u1"]


async def test_unknown_ids_are_none_and_remembered() -> None:
    up = Catalog(rows(2))
    src = source(up, FakeClock())
    assert [getattr(r, "id", r) for r in await src.fetch(["u1", "nope"])] == ["u1", None]
    assert await src.fetch(["nope"]) == [None] and len(up.requests) == 1


async def test_serve_stale_inside_the_window_then_fail(caplog: pytest.LogCaptureFixture) -> None:
    clock, up = FakeClock(), Catalog(rows(3))
    src = source(up, clock)
    await src.fetch(["u1"])
    up.fail = True
    clock.advance(120)  # past the TTL, inside stale-if-error
    with caplog.at_level(logging.WARNING, logger="tailor.upstream"):
        got = await src.fetch(["u1", "u2"])
    assert isinstance(got[0], ItemRecord) and got[0].title == "Up 1"
    assert isinstance(got[1], UpstreamError)  # never fetched: nothing stale to serve
    assert "1 of 2 ids served stale, 1 unavailable" in caplog.text
    assert src.stats.stale_served == 1
    clock.advance(600)  # beyond the window
    assert isinstance((await src.fetch(["u1"]))[0], UpstreamError)
    up.fail = False
    assert (await src.fetch(["u1"]))[0].title == "Up 1"


async def test_field_map_and_invalid_rows_fail_only_their_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = Catalog(
        {
            "s1": {"sku": "s1", "name": "Boot", "cost": 10, "warehouse": "x"},
            "s2": {"sku": "s2", "name": "Bag", "cost": "ten"},
        }
    )
    config = UpstreamConfig(
        "catalog",
        "http://up.test",
        retries=0,
        field_map=parse_field_map(["sku=id", "name=title", "cost=price"]),
    )
    client = UpstreamClient(config, transport=httpx.MockTransport(up))
    src = catalog_source(client)
    with caplog.at_level(logging.ERROR, logger="tailor.upstream"):
        good, bad = await src.fetch(["s1", "s2"])
    assert isinstance(good, ItemRecord) and (good.id, good.title, good.price) == (
        "s1",
        "Boot",
        10.0,
    )
    assert isinstance(bad, UpstreamPayloadError)
    assert "invalid row in GET /items (id 's2'): field 'price'" in caplog.text


async def test_a_payload_of_the_wrong_shape_fails_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = Catalog(rows(2))
    up.transform = lambda r: r
    src = source(up, FakeClock())

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"id": "u1"}])

    src.client.http._transport = httpx.MockTransport(handler)
    with caplog.at_level(logging.ERROR, logger="tailor.upstream"):
        got = await src.fetch(["u1"])
    assert isinstance(got[0], UpstreamPayloadError)
    assert 'malformed GET /items payload: expected {"items": [...]}' in caplog.text


async def test_purge_by_tag_and_invalidate_drop_cached_answers() -> None:
    up = Catalog(rows(3))
    src = source(up, FakeClock())
    await src.fetch(["u1", "u2"])
    assert src.invalidate_tags(["item:u1"]) == 1
    await src.fetch(["u1", "u2"])
    assert len(up.requests) == 2 and up.requests[1].url.params["ids"] == "u1"
    assert src.invalidate() == 2


async def test_crm_rows_become_users_with_extra_columns_as_traits() -> None:
    up = Catalog(
        {
            "c1": {
                "id": "c1",
                "traits": {"tier": "gold"},
                "city": "Oslo",
                "updated_at": "2024-01-01T00:00:00Z",
            }
        },
        kind="users",
    )
    src = source(up, FakeClock())
    (user,) = await src.fetch(["c1"])
    assert isinstance(user, UserRecord)
    assert user.traits == {"tier": "gold", "city": "Oslo"} and user.updated_at == 1_704_067_200.0


def test_parse_field_map_rejects_bad_pairs() -> None:
    assert parse_field_map(("a=b", " c = d ")) == {"a": "b", "c": "d"}
    with pytest.raises(ValueError, match="UPSTREAM=TAILOR"):
        parse_field_map(["nope"])

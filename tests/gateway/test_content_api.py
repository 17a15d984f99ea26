"""similarItems, search and content recommendations through GraphQL; live index updates and swaps.

The hashing encoder keeps these fast (token overlap ~ similarity); the real MiniLM model is
exercised in the slow tests of tests/embeddings.
"""

from __future__ import annotations

import asyncio
from typing import Any

from catalog.importer import validate_item
from gateway.models import refresh_models
from gateway.wiring import model_stores
from tests.conftest import NOW, Gateway

CATALOG = [
    ("d1", "Red floral summer dress", ["Dresses"], 49.0),
    ("d2", "Light floral summer sundress", ["Dresses"], 39.0),
    ("d3", "Black evening dress", ["Dresses"], 129.0),
    ("b1", "Leather winter boots", ["Shoes"], 149.0),
    ("b2", "Warm winter boots with fur", ["Shoes"], 99.0),
    ("s1", "White running sneakers", ["Shoes"], 89.0),
    ("g1", "Leather tote bag", ["Bags"], 79.0),
]


def seed(
    gw: Gateway, rows: list[tuple[str, str, list[str], float]] = CATALOG, *, build: bool = True
) -> None:
    items = [
        validate_item(
            {"id": i, "title": t, "categories": c, "price": p, "description": t}, gw.clock()
        )
        for i, t, c, p in rows
    ]
    gw.services.store.upsert_items(items)
    gw.services.catalog.update(items)
    if build:
        gw.services.content.build(items)


async def gql_data(gw: Gateway, query: str, **kw: Any) -> Any:
    r = await gw.gql(query, **kw)
    body = r.json()
    assert "errors" not in body, body
    return body["data"]


async def test_similar_items_filters_and_reasons(gateway: Gateway) -> None:
    seed(gateway)
    data = await gql_data(
        gateway, '{ similarItems(itemId: "d1", first: 2) { item { id } score reason source } }'
    )
    rows = data["similarItems"]
    assert rows[0]["item"]["id"] == "d2"
    assert all(
        r["source"] == "content" and r["reason"] == "Similar to Red floral summer dress"
        for r in rows
    )
    assert "d1" not in [r["item"]["id"] for r in rows]
    cheap = await gql_data(
        gateway,
        '{ similarItems(itemId: "d1", first: 5, filter: {priceMax: 100, categories: ["Dresses"]}) { item { id } } }',
    )
    assert [r["item"]["id"] for r in cheap["similarItems"]] == ["d2"]
    unknown = await gateway.gql('{ similarItems(itemId: "nope") { score } }')
    assert unknown.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_search_and_personalization(gateway: Gateway) -> None:
    seed(gateway)
    data = await gql_data(
        gateway, '{ search(text: "winter boots", first: 2) { item { id } reason } }'
    )
    assert {r["item"]["id"] for r in data["search"]} == {"b1", "b2"}
    # Two users with different tastes see "leather" ranked by their own history.
    events = [{"messageId": "h1", "type": "purchase", "itemId": "b2", "properties": {"price": 99}}]
    await gateway.gql(
        "mutation($e:[EventInput!]!){ track(events:$e){ accepted } }",
        {"e": events},
        user="boots-fan",
    )
    events = [{"messageId": "h2", "type": "purchase", "itemId": "g1", "properties": {"price": 79}}]
    await gateway.gql(
        "mutation($e:[EventInput!]!){ track(events:$e){ accepted } }", {"e": events}, user="bag-fan"
    )
    q = '{ search(text: "leather", first: 2) { item { id } reason } }'
    boots = (await gql_data(gateway, q, user="boots-fan"))["search"]
    bags = (await gql_data(gateway, q, user="bag-fan"))["search"]
    assert boots[0]["item"]["id"] in {"b1", "b2"} and bags[0]["item"]["id"] == "g1"
    assert boots[0]["reason"].endswith("tuned to your taste")
    generic = await gql_data(
        gateway,
        '{ search(text: "leather", first: 2, personalized: false) { reason } }',
        user="bag-fan",
    )
    assert not generic["search"][0]["reason"].endswith("tuned to your taste")
    empty = await gateway.gql('{ search(text: "  ") { score } }')
    assert empty.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_content_recommendations_follow_the_newest_events(gateway: Gateway) -> None:
    seed(gateway)
    q = "{ me { recommendations(first: 2, strategy: CONTENT) { item { id } reason source } } }"
    track = "mutation($e:[EventInput!]!){ track(events:$e){ accepted } }"
    await gateway.gql(
        track,
        {"e": [{"messageId": "c1", "type": "view", "itemId": "d1", "timestamp": NOW - 60}]},
        user="u1",
    )
    recs = (await gql_data(gateway, q, user="u1"))["me"]["recommendations"]
    assert recs[0]["item"]["id"] == "d2" and recs[0]["source"] == "content"
    assert recs[0]["reason"] == "Because you viewed Red floral summer dress"
    assert "d1" not in [r["item"]["id"] for r in recs]  # never re-suggests what was just seen
    for n in range(3):
        await gateway.gql(
            track,
            {"e": [{"messageId": f"c2-{n}", "type": "purchase", "itemId": "b1", "timestamp": NOW}]},
            user="u1",
        )
    recs = (await gql_data(gateway, q, user="u1"))["me"]["recommendations"]
    assert recs[0]["item"]["id"] == "b2"


async def test_new_items_become_searchable_without_a_rebuild(gateway: Gateway) -> None:
    seed(gateway)
    version = gateway.services.content.version
    gateway.clock.advance(60)
    seed(gateway, [("x1", "Yellow raincoat with hood", ["Coats"], 59.0)], build=False)
    settings = gateway.app.state.settings
    await asyncio.to_thread(
        refresh_models, gateway.services, model_stores(settings)
    )  # one poller tick
    data = await gql_data(gateway, '{ search(text: "yellow raincoat", first: 1) { item { id } } }')
    assert data["search"][0]["item"]["id"] == "x1"
    assert gateway.services.content.version == version


async def test_index_swap_fails_no_request(gateway: Gateway) -> None:
    seed(gateway)
    items = gateway.services.catalog.all_items()

    async def queries() -> list[int]:
        codes = []
        for _ in range(30):
            r = await gateway.gql('{ similarItems(itemId: "d1", first: 3) { item { id } } }')
            codes.append(r.status_code if "errors" not in r.json() else 500)
        return codes

    async def rebuild() -> None:
        for _ in range(3):
            await asyncio.to_thread(gateway.services.content.build, items)

    codes, _ = await asyncio.gather(queries(), rebuild())
    assert set(codes) == {200}
    assert len(gateway.services.content.store.versions()) >= 2


async def test_without_personalization_consent_answers_are_generic(gateway: Gateway) -> None:
    seed(gateway)
    track = "mutation($e:[EventInput!]!){ track(events:$e){ accepted } }"
    await gateway.gql(
        track,
        {"e": [{"messageId": "k1", "type": "purchase", "itemId": "b1", "timestamp": NOW}]},
        user="u7",
    )
    q = "{ me { recommendations(first: 3) { item { id } reason source } } }"
    personal = (await gql_data(gateway, q, user="u7"))["me"]["recommendations"]
    assert any(r["source"] != "trending" for r in personal)
    off = await gql_data(
        gateway, "mutation { setConsent(personalization: false) { personalization } }", user="u7"
    )
    assert off["setConsent"]["personalization"] is False
    generic = (await gql_data(gateway, q, user="u7"))["me"]["recommendations"]
    # Generic sources only: trending, then the newest catalog items when trending runs short.
    assert generic and all(r["source"] in ("trending", "catalog") for r in generic)
    assert generic[0]["source"] == "trending"
    assert all(r["reason"].endswith("(personalization off)") for r in generic)
    search = await gql_data(gateway, '{ search(text: "boots", first: 1) { reason } }', user="u7")
    assert not search["search"][0]["reason"].endswith("tuned to your taste")
    # Sec-GPC opts a request out even when consent is on.
    gpc = await gateway.gql(q, user="u1", headers={"sec-gpc": "1"})
    gpc_sources = {r["source"] for r in gpc.json()["data"]["me"]["recommendations"]}
    assert gpc_sources and gpc_sources <= {"trending", "catalog"}

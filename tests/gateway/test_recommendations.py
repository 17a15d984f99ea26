"""Recommendations through the GraphQL app: every strategy, filters, diversity, cold start,
fold-in after `track`, tuned weights picked up by the poller, segmentRecommendations."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from catalog.importer import validate_item
from gateway.models import ensure_index, refresh_models, train_cf
from gateway.wiring import blend_weights, model_stores
from tests.conftest import NOW, Gateway

CATS = ("Shoes", "Dresses", "Bags", "Coats")
WORDS = {
    "Shoes": "leather sneaker",
    "Dresses": "silk gown",
    "Bags": "canvas tote",
    "Coats": "wool parka",
}
N_ITEMS = 80

RECS = """query($first: Int!, $strategy: Strategy, $filter: ItemFilterInput, $diversity: Float,
               $max: Int, $context: RecommendationContext) {
  me { recommendations(first: $first, strategy: $strategy, filter: $filter, diversity: $diversity,
                       maxPerCategory: $max, context: $context) {
    item { id title categories price available attributes } score reason source } } }"""


def catalog_rows() -> list[dict[str, Any]]:
    rows = []
    for k in range(N_ITEMS):
        cat = CATS[k % 4]
        color = "red" if k % 2 else "blue"
        rows.append(
            {
                "id": f"i{k}",
                "title": f"{color} {WORDS[cat]} {k}",
                "description": f"a {color} {WORDS[cat]} from the {cat.lower()} range",
                "categories": [cat],
                "price": 10.0 + k,
                "available": k % 10 != 9,
                "attributes": {"color": color},
            }
        )
    return rows


def cat_of(item: dict[str, Any]) -> str:
    return str(item["categories"][0])


def events_of(user: str, items: list[str], etype: str, at: float) -> list[dict[str, Any]]:
    t = at * 1000
    return [
        {
            "messageId": f"{user}-{etype}-{item}-{t + n}",
            "type": etype,
            "userId": user,
            "itemId": item,
            "timestamp": t + n,
            **({"properties": {"price": 20.0, "quantity": 1}} if etype == "purchase" else {}),
        }
        for n, item in enumerate(items)
    ]


async def ingest(gw: Gateway, events: list[dict[str, Any]]) -> None:
    result = await gw.services.ingest.ingest(events)
    assert result.count("accepted") == len(events), [
        r for r in result.results if r.status != "accepted"
    ]


async def open_shop(gw: Gateway, *, cf: bool = True) -> None:
    """80 items in 4 categories; 60 users each loyal to one category; index and CF trained."""
    items = [validate_item(r, NOW) for r in catalog_rows()]
    gw.services.store.upsert_items(items)
    gw.services.catalog.update(items)
    rng = random.Random(3)
    events = []
    for u in range(60):
        own = [f"i{k}" for k in range(u % 4, N_ITEMS, 4)]
        events += events_of(f"u{u}", rng.sample(own, 10), "view", NOW - 5 * 86_400 + u * 60)
    for u in range(1, 25):  # i5 (Dresses) is bought a lot today: the top trending item
        events += events_of(f"u{u}", ["i5"], "purchase", NOW - 7200 + u)
    await ingest(gw, events)
    ensure_index(gw.services)
    if cf:
        train_cf(gw.services, model_stores(gw.app.state.settings))


async def recs(
    gw: Gateway, user: str | None, first: int = 10, **variables: Any
) -> list[dict[str, Any]]:
    headers = {} if user else {"x-anonymous-id": "visitor-1"}
    r = await gw.gql(RECS, {"first": first, **variables}, user=user, headers=headers)
    body = r.json()
    assert "errors" not in body, body
    return list(body["data"]["me"]["recommendations"])


def shoe_fan_history() -> list[str]:
    return [f"i{k}" for k in range(0, 40, 4)]


async def test_hybrid_recommendations_carry_reasons_and_sources(gateway: Gateway) -> None:
    await open_shop(gateway)
    rows = await recs(gateway, "u0")  # a Shoes fan (u0 % 4 == 0)
    assert len(rows) == 10
    assert {r["source"] for r in rows} <= {"cf", "content", "trending"}
    assert "cf" in {r["source"] for r in rows}
    assert Counter(cat_of(r["item"]) for r in rows).most_common(1)[0][0] == "Shoes"
    for r in rows:
        assert r["reason"]
        if r["source"] in ("cf", "content"):
            assert r["reason"].startswith("Because you ")
        if r["source"] == "trending":
            assert r["reason"] == f"Trending in {cat_of(r['item'])}"


async def test_purchased_items_are_not_recommended_again(gateway: Gateway) -> None:
    await open_shop(gateway)
    assert (await recs(gateway, "u40", 3, strategy="TRENDING"))[0]["item"]["id"] == "i5"
    await ingest(gateway, events_of("u40", ["i5"], "purchase", NOW - 60))
    for strategy in ("TRENDING", "HYBRID"):
        rows = await recs(gateway, "u40", 10, strategy=strategy)
        assert len(rows) == 10 and "i5" not in {r["item"]["id"] for r in rows}


@pytest.mark.parametrize("strategy", ["CF", "CONTENT", "TRENDING"])
async def test_each_strategy_answers_from_its_own_source(gateway: Gateway, strategy: str) -> None:
    await open_shop(gateway)
    rows = await recs(gateway, "u25", 6, strategy=strategy)
    assert len(rows) == 6
    assert {r["source"] for r in rows} == {strategy.lower()}
    if strategy == "TRENDING":
        assert rows[0]["item"]["id"] == "i5"
    else:  # u25 likes Dresses
        assert Counter(cat_of(r["item"]) for r in rows)["Dresses"] >= 4


async def test_context_item_adds_similar_items(gateway: Gateway) -> None:
    await open_shop(gateway)
    rows = await recs(gateway, "u0", context={"itemId": "i2"})
    context = [r for r in rows if r["source"] == "context"]
    assert context and all(cat_of(r["item"]) == "Bags" for r in context)
    assert all(r["reason"] == "Similar to blue canvas tote 2" for r in context)


FILTERS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = {
    "excludeIds": (
        {"excludeIds": [f"i{k}" for k in range(0, 80, 2)]},
        lambda it: int(it["id"][1:]) % 2 == 1,
    ),
    "categories": ({"categories": ["Coats"]}, lambda it: cat_of(it) == "Coats"),
    "excludeCategories": (
        {"excludeCategories": ["Shoes", "Bags"]},
        lambda it: cat_of(it) not in ("Shoes", "Bags"),
    ),
    "price": ({"priceMin": 30, "priceMax": 60}, lambda it: 30 <= it["price"] <= 60),
    "availableOnly": ({"availableOnly": True}, lambda it: it["available"]),
    "attributes": ({"attributes": {"color": "red"}}, lambda it: it["attributes"]["color"] == "red"),
}


@pytest.mark.parametrize("strategy", ["HYBRID", "CF", "CONTENT"])
async def test_filters_still_return_first_items(gateway: Gateway, strategy: str) -> None:
    await open_shop(gateway)
    for name, (filt, ok) in FILTERS.items():
        rows = await recs(gateway, "u0", 10, strategy=strategy, filter=filt)
        assert len(rows) == 10, name
        assert all(ok(r["item"]) for r in rows), name
    # A Shoes fan asking for coats only still gets ten coats, from every source.
    rows = await recs(
        gateway,
        "u0",
        10,
        strategy=strategy,
        filter={"categories": ["Coats"], "attributes": {"color": "red"}},
    )
    assert len(rows) == 10 and all(cat_of(r["item"]) == "Coats" for r in rows)


async def test_unavailable_items_only_when_asked(gateway: Gateway) -> None:
    await open_shop(gateway)
    shown = await recs(gateway, "u1", 40, strategy="TRENDING", filter={"availableOnly": False})
    assert any(not r["item"]["available"] for r in shown)
    hidden = await recs(gateway, "u1", 40, strategy="TRENDING")
    assert all(r["item"]["available"] for r in hidden)


async def test_diversity_and_category_cap(gateway: Gateway) -> None:
    await open_shop(gateway)
    plain = await recs(gateway, "u0", 10, strategy="CONTENT")
    diverse = await recs(gateway, "u0", 10, diversity=0.9)
    assert len({cat_of(r["item"]) for r in diverse}) > len({cat_of(r["item"]) for r in plain})
    capped = await recs(gateway, "u0", 10, max=3)
    assert len(capped) == 10
    assert max(Counter(cat_of(r["item"]) for r in capped).values()) <= 3


async def test_anonymous_cold_start_gets_trending(gateway: Gateway) -> None:
    await open_shop(gateway)
    rows = await recs(gateway, None, 5)
    assert [r["source"] for r in rows] == ["trending"] * 5
    assert rows[0]["item"]["id"] == "i5" and rows[0]["reason"] == "Trending in Dresses"


def segment_hooks(gw: Gateway, members: dict[str, str], popular: list[str]) -> None:
    def popular_in(
        segment_id: str, k: int, accept: Callable[[str], bool]
    ) -> tuple[list[str], np.ndarray]:
        ids = [i for i in popular if accept(i)][:k] if segment_id == "s-coats" else []
        return ids, np.arange(len(ids), 0, -1, dtype=np.float32)

    gw.services.segment_of = members.get
    gw.services.segments.name_of = {"s-coats": "Coat lovers"}.get  # type: ignore[method-assign]
    gw.services.recommender.segment_popular = popular_in


async def test_cold_start_with_a_segment_gets_segment_popular(gateway: Gateway) -> None:
    await open_shop(gateway)
    coats = [f"i{k}" for k in range(3, N_ITEMS, 4)]
    segment_hooks(gateway, {"newbie": "s-coats"}, coats)
    rows = await recs(gateway, "newbie", 4)
    assert [r["source"] for r in rows] == ["segment"] * 4
    assert [r["item"]["id"] for r in rows] == ["i3", "i7", "i11", "i15"]
    assert rows[0]["reason"] == "Popular with Coat lovers"


SEGMENT_RECS = """query($id: ID, $first: Int!) { segmentRecommendations(segmentId: $id, first: $first) {
  item { id } score reason source } }"""


async def test_segment_recommendations_are_the_same_for_everyone(gateway: Gateway) -> None:
    await open_shop(gateway, cf=False)
    r = await gateway.gql(SEGMENT_RECS, {"id": "s-coats", "first": 3})
    # No segment model yet: never an empty page, the trending fallback says what it is.
    fallback = r.json()["data"]["segmentRecommendations"]
    assert len(fallback) == 3 and {a["source"] for a in fallback} == {"trending"}
    coats = [f"i{k}" for k in range(3, N_ITEMS, 4)]
    segment_hooks(gateway, {"u3": "s-coats", "u7": "s-coats"}, coats)
    answers = []
    for user in ("u3", "u7", None):
        r = await gateway.gql(SEGMENT_RECS, {"id": "s-coats", "first": 3}, user=user)
        answers.append(r.json()["data"]["segmentRecommendations"])
    assert answers[0] == answers[1] == answers[2]
    assert [a["item"]["id"] for a in answers[0]] == ["i3", "i7", "i11"]
    assert {a["reason"] for a in answers[0]} == {"Popular with Coat lovers"}
    own = await gateway.gql(SEGMENT_RECS, {"first": 3}, user="u7")  # default: the caller's
    assert own.json()["data"]["segmentRecommendations"] == answers[0]
    none = await gateway.gql(SEGMENT_RECS, {"first": 3}, user="u1")
    assert none.json()["data"]["segmentRecommendations"] == []
    bad = await gateway.gql(SEGMENT_RECS, {"id": "not valid!", "first": 3})
    assert bad.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_new_events_change_the_next_recommendations_without_retraining(
    gateway: Gateway,
) -> None:
    await open_shop(gateway)
    version = gateway.services.recommender.cf.version
    before = await recs(gateway, "u0", 10, strategy="CF")
    assert Counter(cat_of(r["item"]) for r in before)["Coats"] == 0
    coats = [f"i{k}" for k in range(3, 43, 4)]  # ten coats carted; eight others available
    r = await gateway.gql(
        """mutation($e: [EventInput!]!) { track(events: $e) { accepted } }""",
        {"e": [{"messageId": f"fold-{i}", "type": "add_to_cart", "itemId": i} for i in coats]},
        user="u0",
    )
    assert r.json()["data"]["track"]["accepted"] == len(coats)
    after = await recs(gateway, "u0", 10, strategy="CF")
    assert Counter(cat_of(r["item"]) for r in after)["Coats"] >= 5
    assert gateway.services.recommender.cf.version == version  # no retrain happened


async def test_tuned_weights_saved_next_to_the_model_are_served(gateway: Gateway) -> None:
    await open_shop(gateway)
    settings = gateway.app.state.settings
    version = gateway.services.recommender.cf.version
    path = model_stores(settings).cf.save_weights(
        {"cf": 0.0, "content": 0.0, "trending": 1.0}, {"metric": "ndcg"}, blend_weights(settings)
    )
    assert path.parent.name == version
    saved = json.loads(path.read_text())["weights"]
    assert saved["trending"] == 1.0 and saved["cf"] == 0.0 and set(saved) >= {"context", "segment"}
    refresh_models(gateway.services, model_stores(settings))  # what the poller runs
    rows = await recs(gateway, "u0", 5)
    assert {r["source"] for r in rows} == {"trending"}


async def test_bad_arguments_are_user_errors(gateway: Gateway) -> None:
    await open_shop(gateway, cf=False)
    for variables in ({"diversity": 1.5}, {"max": 0}, {"filter": {"priceMin": 5, "priceMax": 1}}):
        r = await gateway.gql(RECS, {"first": 3, **variables}, user="u0")
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", variables

"""Trending is real time-decayed popularity over the event log."""

from __future__ import annotations

import random

import numpy as np
import pytest

from recommend.trending import TrendingModel
from storage.types import EventRecord
from tests.conftest import NOW, Gateway
from tests.profiles.test_ingestion import post_events, seed_items

H = 3600.0
CATS = {"a": ("Shoes",), "b": ("Shoes",), "c": ("Bags",), "d": ("Bags",)}


def event(n: int, item: str, etype: str, ts: float) -> EventRecord:
    return EventRecord(f"m{n}", etype, "u", ts, ts, "h", user_id="u", item_id=item)


def model(clock_value: float = NOW) -> TrendingModel:
    return TrendingModel(
        half_life_s=24 * H,
        categories=lambda i: CATS.get(i, ()),
        clock=lambda: clock_value,
        cache_s=0,
        weights={"view": 1.0, "purchase": 8.0},
    )


LOG = [
    event(1, "a", "view", NOW - 48 * H),  # 0.25 after two half-lives
    event(2, "a", "view", NOW - 48 * H),
    event(3, "a", "view", NOW - 48 * H),
    event(4, "a", "view", NOW - 48 * H),  # a: 4 * 0.25 = 1.0
    event(5, "b", "view", NOW - 1 * H),  # b: 0.5 ** (1/24)
    event(6, "c", "purchase", NOW - 72 * H),  # c: 8 * 0.125 = 1.0 ... plus
    event(7, "c", "view", NOW),  # ... 1.0 = 2.0
    event(8, "d", "click", NOW),  # unweighted type: ignored
]


def test_hand_built_log_scores_and_order() -> None:
    m = model()
    m.add_events(LOG)
    ids, scores = m.top(10)
    assert ids == ["c", "a", "b"]
    assert scores == pytest.approx([2.0, 1.0, 0.5 ** (1 / 24)], rel=1e-5)


def test_order_independent() -> None:
    shuffled = LOG[:]
    random.Random(3).shuffle(shuffled)
    m1, m2 = model(), model()
    m1.add_events(LOG)
    for e in shuffled:
        m2.add_events([e])
    assert m1.top(10)[0] == m2.top(10)[0]
    np.testing.assert_allclose(m1.top(10)[1], m2.top(10)[1], rtol=1e-6)


def test_decays_as_time_passes() -> None:
    now = [NOW]
    m = TrendingModel(half_life_s=24 * H, clock=lambda: now[0], cache_s=0, weights={"view": 1.0})
    m.add_events([event(1, "a", "view", NOW)] * 4 + [event(2, "b", "view", NOW + 48 * H)] * 2)
    now[0] = NOW + 48 * H
    assert m.top(2)[0] == ["b", "a"]  # b: 2.0, a: 4 * 0.25 = 1.0


def test_category_filter_exclusions_and_ties() -> None:
    m = model()
    m.add_events(LOG)
    assert m.top(5, category="Shoes")[0] == ["a", "b"]
    assert m.top(5, exclude=frozenset({"c"}))[0] == ["a", "b"]
    assert m.top(1, accept=lambda i: i != "c")[0] == ["a"]
    tie = model()
    tie.add_events([event(1, "z", "view", NOW), event(2, "y", "view", NOW)])
    assert tie.top(2)[0] == ["y", "z"]


async def test_trending_through_graphql(gateway: Gateway) -> None:
    seed_items(gateway)
    events = [
        {"messageId": f"t{n}", "type": t, "userId": f"u{n}", "itemId": i, "timestamp": NOW - 60}
        for n, (t, i) in enumerate(
            [
                ("view", "i1"),
                ("purchase", "i2"),
                ("view", "i2"),
                ("view", "i3"),
                ("add_to_cart", "i3"),
            ]
        )
    ]
    await post_events(gateway, events)
    r = await gateway.gql("{ trending(first: 3) { item { id title } score reason source } }")
    rows = r.json()["data"]["trending"]
    assert [x["item"]["id"] for x in rows] == ["i2", "i3", "i1"]
    assert rows[0]["reason"] == "Trending now" and rows[0]["source"] == "trending"
    assert rows[0]["score"] > rows[1]["score"] > rows[2]["score"] > 0
    cat = await gateway.gql('{ trending(first: 5, category: "Bags") { item { id } reason } }')
    assert cat.json()["data"]["trending"] == [{"item": {"id": "i2"}, "reason": "Trending in Bags"}]
    capped = await gateway.gql("{ trending(first: 100000) { score } }")
    assert len(capped.json()["data"]["trending"]) == 3
    neg = await gateway.gql("{ trending(first: -1) { score } }")
    assert neg.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

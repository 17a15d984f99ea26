"""The recommendation engine through its public API: real EASE, real FAISS (hashing encoder),
real trending; every source, filters with over-fetch, diversity, cold start, fold-in, reasons."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embeddings import HashingEncoder, IndexStore
from profiles.types import HistoryEvent
from recommend.cf import EASE
from recommend.content import ContentService
from recommend.engine import ModelSlot, Recommender, RecommendRequest
from recommend.filters import ItemFilter
from recommend.interactions import InteractionMatrix
from recommend.trending import TrendingModel
from storage.types import EventRecord, ItemRecord

NOW = 1_767_225_600.0
CATS = ("Shoes", "Dresses", "Bags", "Coats")
WORDS = {
    "Shoes": "leather sneaker",
    "Dresses": "silk gown",
    "Bags": "canvas tote",
    "Coats": "wool parka",
}
N_ITEMS = 120


def make_items() -> dict[str, ItemRecord]:
    items = {}
    for k in range(N_ITEMS):
        cat = CATS[k % 4]
        color = "red" if k % 2 else "blue"
        items[f"i{k}"] = ItemRecord(
            id=f"i{k}",
            title=f"{color} {WORDS[cat]} {k}",
            description=f"a {color} {WORDS[cat]} from the {cat.lower()} range",
            categories=(cat,),
            price=10.0 + k,
            available=k % 10 != 9,
            attributes={"color": color},
        )
    return items


def make_history(
    items: list[str], etype: str = "view", start: float = NOW - 86_400
) -> list[HistoryEvent]:
    weight = {"view": 0.5, "purchase": 5.0, "add_to_cart": 3.0}[etype]
    return [
        HistoryEvent(start + n, f"{etype}-{item}-{n}", item, etype, weight)
        for n, item in enumerate(items)
    ]


class World:
    def __init__(self, root: Path) -> None:
        self.items = make_items()
        rng = random.Random(5)
        rows = []
        events = []
        # 80 users, each loyal to one category (views of 12 of its items), plus a little noise.
        for u in range(80):
            cat = u % 4
            own = [f"i{k}" for k in range(cat, N_ITEMS, 4)]
            picks = [*rng.sample(own, 12), f"i{rng.randrange(N_ITEMS)}"]
            for n, item in enumerate(picks):
                ts = NOW - 3 * 86_400 + u * 60 + n
                rows.append((f"u{u}", item, 0.5, ts))
                events.append(EventRecord(f"m{u}-{n}", "view", f"u{u}", ts, ts, "h", item_id=item))
        # i5 (Dresses) is bought a lot lately: the top trending item.
        for n in range(30):
            events.append(
                EventRecord(f"p{n}", "purchase", f"u{n}", NOW - 3600, NOW - 3600, "h", item_id="i5")
            )
        self.matrix = InteractionMatrix.from_rows(rows)
        self.content = ContentService(lambda: HashingEncoder(64), IndexStore(root / "index"))
        self.content.build(self.items.values())
        self.trending = TrendingModel(categories=self.categories, clock=lambda: NOW)
        self.trending.add_events(events)
        self.slot = ModelSlot()
        self.slot.swap(EASE(lambda_=10.0, min_users=1).fit(self.matrix), "v1")

    def categories(self, item_id: str) -> tuple[str, ...]:
        item = self.items.get(item_id)
        return item.categories if item else ()

    def recommender(self, **kw: object) -> Recommender:
        return Recommender(
            content=self.content,
            trending=self.trending,
            cf=self.slot,
            item_of=self.items.get,
            all_items=lambda: self.items.values(),
            **kw,  # type: ignore[arg-type]
        )

    def cat(self, item_id: str) -> str:
        return self.items[item_id].categories[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("engine"))


SHOE_FAN = make_history([f"i{k}" for k in range(0, 40, 4)])  # ten Shoes views


def test_cf_recommends_from_the_users_taste_with_reasons(world: World) -> None:
    recs = world.recommender().recommend(RecommendRequest(history=SHOE_FAN, k=10, strategy="cf"))
    assert len(recs) == 10
    assert {r.source for r in recs} == {"cf"}
    assert Counter(world.cat(r.item_id) for r in recs).most_common(1)[0] == ("Shoes", 10)
    seen = {h[2] for h in SHOE_FAN}
    assert not seen & {r.item_id for r in recs}
    titles = {world.items[i].title for i in seen}
    assert all(r.reason.startswith("Because you viewed ") and r.reason[19:] in titles for r in recs)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)


def test_content_source_follows_the_user_vector(world: World) -> None:
    recs = world.recommender().recommend(
        RecommendRequest(history=SHOE_FAN, k=8, strategy="content")
    )
    assert len(recs) == 8 and {r.source for r in recs} == {"content"}
    assert all(world.cat(r.item_id) == "Shoes" for r in recs)
    assert not {h[2] for h in SHOE_FAN} & {r.item_id for r in recs}


def test_trending_source_and_reason(world: World) -> None:
    recs = world.recommender().recommend(RecommendRequest(k=5, strategy="trending"))
    assert recs[0].item_id == "i5" and recs[0].reason == "Trending in Dresses"
    assert {r.source for r in recs} == {"trending"}


def test_context_item_joins_the_hybrid_blend(world: World) -> None:
    req = RecommendRequest(history=SHOE_FAN, k=10, context_item="i2")  # a bag
    recs = world.recommender().recommend(req)
    context = [r for r in recs if r.source == "context"]
    assert context and all(world.cat(r.item_id) == "Bags" for r in context)
    assert all(r.reason == f"Similar to {world.items['i2'].title}" for r in context)
    assert "i2" not in {r.item_id for r in recs}


def fixed_segment(
    ids: list[str],
) -> Callable[[str, int, Callable[[str], bool]], tuple[list[str], np.ndarray]]:
    def popular(
        segment_id: str, k: int, accept: Callable[[str], bool]
    ) -> tuple[list[str], np.ndarray]:
        keep = [i for i in ids if accept(i)][:k]
        return keep, np.arange(len(keep), 0, -1, dtype=np.float32)

    return popular


def test_cold_start_uses_segment_popular_when_a_segment_applies(world: World) -> None:
    coats = [f"i{k}" for k in range(3, N_ITEMS, 4)]
    rec = world.recommender(segment_popular=fixed_segment(coats))
    recs = rec.recommend(RecommendRequest(k=6, segment_id="s1", segment_name="Outdoor people"))
    assert len(recs) == 6 and {r.source for r in recs} == {"segment"}
    assert all(r.reason == "Popular with Outdoor people" for r in recs)
    assert [r.item_id for r in recs] == [i for i in coats if world.items[i].available][:6]
    # No segment: trending.
    cold = rec.recommend(RecommendRequest(k=6))
    assert {r.source for r in cold} == {"trending"} and cold[0].item_id == "i5"


def test_segment_answer_is_the_same_for_everyone_in_it(world: World) -> None:
    bags = [f"i{k}" for k in range(2, N_ITEMS, 4)]
    rec = world.recommender(segment_popular=fixed_segment(bags))
    a = rec.for_segment("s2", 5, segment_name="Bag lovers")
    assert [r.item_id for r in a] == [i for i in bags if world.items[i].available][:5]
    assert all(r.source == "segment" and r.reason == "Popular with Bag lovers" for r in a)
    cheap = rec.for_segment("s2", 5, ItemFilter(price_max=40.0))
    assert [r.item_id for r in cheap] == ["i2", "i6", "i10", "i14", "i18"]
    assert world.recommender().for_segment("s2", 5) == []  # no segment wiring yet


FILTERS = {
    "exclude ids": ItemFilter(exclude_ids=frozenset(f"i{k}" for k in range(0, 80, 4))),
    "category include": ItemFilter(categories=frozenset({"Coats"})),
    "category exclude": ItemFilter(exclude_categories=frozenset({"Shoes", "Dresses"})),
    "price range": ItemFilter(price_min=60.0, price_max=90.0),
    "available only": ItemFilter(available_only=True),
    "attributes": ItemFilter(attributes={"color": "red"}),
    "combined": ItemFilter(
        categories=frozenset({"Bags"}), price_min=50.0, attributes={"color": "blue"}
    ),
}


@pytest.mark.parametrize("strategy", ["cf", "content", "trending", "hybrid"])
@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_return_n_items_whenever_n_are_eligible(
    world: World, strategy: str, name: str
) -> None:
    filt = FILTERS[name]
    seen = {h[2] for h in SHOE_FAN}
    eligible = [i for i, it in world.items.items() if filt.accepts(it) and i not in seen]
    k = 10
    recs = world.recommender().recommend(
        RecommendRequest(history=SHOE_FAN, k=k, strategy=strategy, filter=filt)
    )
    ids = [r.item_id for r in recs]
    assert all(filt.accepts(world.items[i]) for i in ids)
    assert len(set(ids)) == len(ids)
    if strategy == "trending":  # trending knows only the items with events
        assert len(ids) == min(k, len([i for i in eligible if i in world.trending._score]))
    else:  # CF saw every item in training; the index holds them all
        assert len(ids) == min(k, len(eligible))


def test_few_eligible_items_return_all_of_them(world: World) -> None:
    filt = ItemFilter(categories=frozenset({"Coats"}), price_min=100.0)  # i103..i127 coats
    eligible = {i for i, it in world.items.items() if filt.accepts(it)}
    assert 0 < len(eligible) < 10
    for strategy in ("cf", "content", "hybrid"):
        recs = world.recommender().recommend(
            RecommendRequest(history=SHOE_FAN, k=10, strategy=strategy, filter=filt)
        )
        assert {r.item_id for r in recs} == eligible


def test_purchased_items_are_excluded_per_configured_event_type(world: World) -> None:
    bought = make_history(["i5"], "purchase")
    carted = make_history(["i5"], "add_to_cart")
    default = world.recommender()
    assert "i5" not in [
        r.item_id
        for r in default.recommend(RecommendRequest(history=bought, k=5, strategy="trending"))
    ]
    assert (
        default.recommend(RecommendRequest(history=carted, k=5, strategy="trending"))[0].item_id
        == "i5"
    )
    strict = world.recommender(exclude_types=("purchase", "add_to_cart"))
    assert "i5" not in [
        r.item_id
        for r in strict.recommend(RecommendRequest(history=carted, k=5, strategy="trending"))
    ]


def test_diversity_spreads_categories_and_the_cap_holds(world: World) -> None:
    rec = world.recommender()
    plain = rec.recommend(RecommendRequest(history=SHOE_FAN, k=10))
    diverse = rec.recommend(RecommendRequest(history=SHOE_FAN, k=10, diversity=0.8))
    assert len(diverse) == 10
    n_plain = len({world.cat(r.item_id) for r in plain})
    n_diverse = len({world.cat(r.item_id) for r in diverse})
    assert n_diverse > n_plain
    capped = rec.recommend(RecommendRequest(history=SHOE_FAN, k=10, max_per_category=3))
    counts = Counter(world.cat(r.item_id) for r in capped)
    assert len(capped) == 10 and max(counts.values()) <= 3


def test_new_events_change_recommendations_without_retraining(world: World) -> None:
    rec = world.recommender()
    before = rec.recommend(RecommendRequest(history=SHOE_FAN, k=10, strategy="cf"))
    coats = make_history([f"i{k}" for k in range(3, 83, 4)], start=NOW - 3600)
    after = rec.recommend(RecommendRequest(history=SHOE_FAN + coats, k=10, strategy="cf"))
    assert Counter(world.cat(r.item_id) for r in before)["Coats"] == 0
    assert Counter(world.cat(r.item_id) for r in after)["Coats"] >= 5
    assert world.slot.version == "v1"


def test_tuned_weights_win_over_configured_ones_for_their_version(world: World) -> None:
    slot = ModelSlot()
    rec = Recommender(
        content=world.content,
        trending=world.trending,
        cf=slot,
        item_of=world.items.get,
        all_items=lambda: world.items.values(),
        weights={"cf": 1.0, "trending": 0.2},
    )
    assert rec.blend_weights() == {"cf": 1.0, "trending": 0.2}
    model = EASE(lambda_=1.0).fit(
        InteractionMatrix.from_rows([("u", "a", 1.0, 0.0), ("v", "a", 1.0, 0.0)])
    )
    slot.swap(model, "v1", {"cf": 0.3, "trending": 0.7})
    assert rec.blend_weights() == {"cf": 0.3, "trending": 0.7}
    assert not slot.set_weights("v0", {"cf": 1.0})  # another version: ignored
    assert slot.set_weights("v1", {"cf": 0.5, "trending": 0.5})
    assert rec.blend_weights() == {"cf": 0.5, "trending": 0.5}
    slot.swap(model, "v2")
    assert rec.blend_weights() == {"cf": 1.0, "trending": 0.2}


def test_hybrid_weights_decide_the_ranking(world: World) -> None:
    cf_heavy = world.recommender(weights={"cf": 1.0, "content": 0.0, "trending": 0.01})
    trend_heavy = world.recommender(weights={"cf": 0.01, "content": 0.0, "trending": 1.0})
    a = cf_heavy.recommend(RecommendRequest(history=SHOE_FAN, k=5))
    b = trend_heavy.recommend(RecommendRequest(history=SHOE_FAN, k=5))
    assert {r.source for r in a} == {"cf"}
    assert b[0].item_id == "i5" and b[0].source == "trending"


def test_unknown_strategy_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        world.recommender().recommend(RecommendRequest(strategy="magic"))

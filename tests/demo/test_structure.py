"""Taste, popularity and trend structure that recommenders are meant to learn."""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from datetime import datetime

from tests.demo.conftest import END, LoadedWorld
from tests.demo.features import identity_map


def _days_ago(timestamp: str) -> float:
    return (END - datetime.fromisoformat(timestamp)).total_seconds() / 86_400


def test_views_follow_declared_category_preferences(world: LoadedWorld) -> None:
    category = {item["id"]: item["categories"][0] for item in world.items}
    declared = {u["id"]: set(u["traits"]["preferred_categories"]) for u in world.users}
    links = identity_map(world.events)
    hits = total = 0
    for e in world.events:
        user = e.get("userId") or links.get(e.get("anonymousId", ""))
        if e["type"] in {"view", "purchase"} and user and declared[user]:
            total += 1
            hits += category[e["itemId"]] in declared[user]
    assert total > 1000 and hits / total > 0.8


def test_users_with_the_same_taste_view_overlapping_items(world: LoadedWorld) -> None:
    viewed: dict[str, set[str]] = defaultdict(set)
    for e in world.events:
        if e["type"] == "view" and "userId" in e:
            viewed[e["userId"]].add(e["itemId"])
    taste = {
        u["id"]: tuple(u["traits"]["preferred_categories"])
        for u in world.users
        if len(u["traits"]["preferred_categories"]) == 1 and len(viewed[u["id"]]) >= 20
    }
    same, different = [], []
    for a, b in itertools.combinations(sorted(taste), 2):
        jaccard = len(viewed[a] & viewed[b]) / len(viewed[a] | viewed[b])
        (same if taste[a] == taste[b] else different).append(jaccard)
    assert len(same) > 20 and len(different) > 20
    assert sum(same) / len(same) > 4 * sum(different) / len(different)


def test_popularity_is_skewed(world: LoadedWorld) -> None:
    views = Counter(e["itemId"] for e in world.events if e["type"] == "view")
    ranked = sorted(views.values(), reverse=True)
    top = ranked[: len(world.items) // 20]
    # The top 5% of items draw over 3x their proportional share of views (~35% at the
    # default size; this small world's 40-item categories flatten it a little).
    assert sum(top) > 0.15 * sum(ranked)
    assert ranked[0] > 6 * ranked[len(ranked) // 2]


def test_trending_items_rise_over_the_last_days(world: LoadedWorld) -> None:
    new_in = {item["id"] for item in world.items if _days_ago(item["created_at"]) < 22}
    assert new_in
    last_two = [e for e in world.events if e["type"] == "view" and _days_ago(e["timestamp"]) < 2]
    earlier = [
        e for e in world.events if e["type"] == "view" and 4 <= _days_ago(e["timestamp"]) < 7
    ]
    share_recent = sum(e["itemId"] in new_in for e in last_two) / len(last_two)
    share_earlier = sum(e["itemId"] in new_in for e in earlier) / len(earlier)
    assert share_recent > 0.05
    assert share_recent > 3 * share_earlier
    assert not any(e.get("itemId") in new_in for e in world.events if _days_ago(e["timestamp"]) > 7)


def test_descriptions_of_similar_items_share_words(world: LoadedWorld) -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z-]+", text.lower()))

    groups: dict[tuple[str, str], list[set[str]]] = defaultdict(list)
    for item in world.items:
        style = item["tags"][0]
        groups[(item["categories"][0], style)].append(words(item["description"]))
    keys = sorted(k for k, v in groups.items() if len(v) >= 4)
    within, across = [], []
    for key in keys:
        a, b = groups[key][0], groups[key][1]
        within.append(len(a & b) / len(a | b))
    for key_a, key_b in itertools.pairwise(keys):
        if key_a[0] != key_b[0] and key_a[1] != key_b[1]:
            a, b = groups[key_a][0], groups[key_b][0]
            across.append(len(a & b) / len(a | b))
    assert within and across
    assert sum(within) / len(within) > 1.3 * sum(across) / len(across)


def test_sessions_use_every_channel_and_stay_on_one_channel(world: LoadedWorld) -> None:
    channels = Counter(e["channel"] for e in world.events)
    assert set(channels) == {"web", "mobile", "email", "offline"}
    assert channels["web"] + channels["mobile"] > 0.7 * sum(channels.values())
    per_session: dict[str, set[str]] = defaultdict(set)
    for e in world.events:
        per_session[e["sessionId"]].add(e["channel"])
    assert all(len(c) == 1 for c in per_session.values())

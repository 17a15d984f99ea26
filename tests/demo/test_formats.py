"""The three import files and the truth file follow the documented contract exactly."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta

from tests.demo.conftest import END, LoadedWorld

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
EVENT_TYPES = {"view", "click", "add_to_cart", "remove_from_cart", "purchase", "search", "identify"}
CHANNELS = {"web", "mobile", "email", "offline"}
CATEGORY_NAMES = {
    "Dresses", "Shoes", "Sneakers", "Jeans", "T-Shirts", "Shirts", "Jackets", "Coats",
    "Knitwear", "Skirts", "Trousers", "Shorts", "Swimwear", "Sportswear", "Bags",
    "Accessories", "Jewelry", "Underwear", "Hats", "Watches",
}  # fmt: skip


def test_summary_counts_match_files(world: LoadedWorld) -> None:
    s = world.summary
    assert (s.n_items, s.n_users, s.n_events) == (800, 400, len(world.events))
    assert len(world.items) == 800 and len(world.users) == 400
    assert sum(s.event_counts.values()) == len(world.events)
    assert s.event_counts == dict(Counter(e["type"] for e in world.events))
    assert s.n_sessions >= len({e["sessionId"] for e in world.events})
    assert s.end == END and s.start == END - timedelta(days=60)


def test_items_have_every_field_with_the_right_types(world: LoadedWorld) -> None:
    ids = [item["id"] for item in world.items]
    assert ids == [f"i{n:05d}" for n in range(1, 801)]
    titles = [item["title"] for item in world.items]
    assert len(set(titles)) == len(titles)
    for item in world.items:
        assert list(item) == [
            "id", "title", "description", "categories", "tags", "price", "currency",
            "available", "attributes", "created_at",
        ]  # fmt: skip
        assert item["categories"][0] in CATEGORY_NAMES
        assert item["categories"][1:] in ([], ["Women"], ["Men"])
        assert item["tags"] and all(isinstance(t, str) and t for t in item["tags"])
        assert isinstance(item["price"], float) and item["price"] >= 2.0
        assert round(item["price"], 2) == item["price"]
        assert item["currency"] == "EUR"
        assert isinstance(item["available"], bool)
        assert set(item["attributes"]) == {"brand", "color", "material", "season", "gender"}
        assert item["attributes"]["gender"] in {"women", "men", "unisex"}
        assert ISO_Z.match(item["created_at"])
        # Descriptions mention material and season, so similar items read alike.
        text = item["description"].lower()
        assert item["attributes"]["material"] in text and 1 <= text.count(". ") <= 2
        assert item["title"].startswith(item["attributes"]["brand"])
    available = sum(item["available"] for item in world.items) / len(world.items)
    assert 0.9 <= available <= 0.99
    assert {item["categories"][0] for item in world.items} == CATEGORY_NAMES


def test_prices_are_realistic_per_category(world: LoadedWorld) -> None:
    by_category: dict[str, list[float]] = {}
    for item in world.items:
        by_category.setdefault(item["categories"][0], []).append(item["price"])
    median = {c: sorted(p)[len(p) // 2] for c, p in by_category.items()}
    assert median["T-Shirts"] < median["Jeans"] < median["Coats"]
    assert median["Underwear"] < median["Dresses"] < median["Watches"]
    assert 8 <= median["T-Shirts"] <= 35 and 100 <= median["Coats"] <= 300


def test_users_have_traits_and_consent(world: LoadedWorld) -> None:
    assert [u["id"] for u in world.users] == [f"u{n:05d}" for n in range(1, 401)]
    emails = [u["traits"]["email"] for u in world.users]
    assert len(set(emails)) == len(emails)
    for user in world.users:
        assert list(user) == ["id", "traits", "consent"]
        traits = user["traits"]
        assert set(traits) == {
            "email", "first_name", "country", "age_band", "loyalty_tier", "signup_date",
            "preferred_categories", "newsletter",
        }  # fmt: skip
        assert traits["email"].endswith("@example.com")
        assert traits["loyalty_tier"] in {"gold", "silver", "bronze", "none"}
        assert re.match(r"^(\d\d-\d\d|65\+)$", traits["age_band"])
        assert set(traits["preferred_categories"]) <= CATEGORY_NAMES
        assert len(traits["preferred_categories"]) <= 3
        assert datetime.fromisoformat(traits["signup_date"]).date() <= END.date()
        assert isinstance(traits["newsletter"], bool)
        assert user["consent"]["tracking"] is True
        assert isinstance(user["consent"]["personalization"], bool)
    opted_out = sum(not u["consent"]["personalization"] for u in world.users)
    assert 1 <= opted_out <= 30


def test_events_are_well_formed_sorted_and_inside_the_window(world: LoadedWorld) -> None:
    items = {item["id"] for item in world.items}
    users = {user["id"] for user in world.users}
    start = world.summary.start
    stamps = [e["timestamp"] for e in world.events]
    assert all(ISO_Z.match(t) for t in stamps)
    assert stamps == sorted(stamps)
    assert start <= datetime.fromisoformat(stamps[0]) and datetime.fromisoformat(stamps[-1]) < END
    message_ids = [e["messageId"] for e in world.events]
    assert len(set(message_ids)) == len(message_ids) and all(m[0] == "m" for m in message_ids)
    for e in world.events:
        assert e["type"] in EVENT_TYPES and e["channel"] in CHANNELS and e["sessionId"]
        assert "userId" in e or "anonymousId" in e
        if "userId" in e:
            assert e["userId"] in users
        if e["type"] in {"search", "identify"}:
            assert "itemId" not in e
        else:
            assert e["itemId"] in items
        if e["type"] in {"add_to_cart", "purchase"}:
            props = e["properties"]
            assert isinstance(props["price"], float) and props["quantity"] in (1, 2)
        elif e["type"] == "search":
            assert isinstance(e["properties"]["query"], str) and e["properties"]["query"]
        else:
            assert "properties" not in e
        if e["type"] == "identify":
            assert e["anonymousId"].startswith("a") and e["userId"] in users
    assert set(world.summary.event_counts) == EVENT_TYPES


def test_purchases_and_carts_match_the_catalog(world: LoadedWorld) -> None:
    items = {item["id"]: item for item in world.items}
    for e in world.events:
        item = items.get(e.get("itemId", ""))
        if item is not None:
            assert item["created_at"] <= e["timestamp"]
        if e["type"] in {"add_to_cart", "purchase"}:
            assert e["properties"]["price"] == item["price"]
            assert item["available"]  # sold-out items are viewed, never bought


def test_anonymous_sessions_are_linked_by_identify(world: LoadedWorld) -> None:
    identifies = [e for e in world.events if e["type"] == "identify"]
    assert len(identifies) >= 10
    linked = {e["anonymousId"]: e for e in identifies}
    assert len(linked) == len(identifies)  # one login per anonymous id
    anonymous = [e for e in world.events if "anonymousId" in e and e["type"] != "identify"]
    assert all("userId" not in e for e in anonymous)
    for e in anonymous:
        login = linked.get(e["anonymousId"])
        if login is not None:
            assert e["timestamp"] <= login["timestamp"]
    # Some visitors never log in (bounce traffic) — their ids have no identify.
    assert any(e["anonymousId"] not in linked for e in anonymous)


def test_signup_precedes_each_users_first_event(world: LoadedWorld) -> None:
    first: dict[str, str] = {}
    for e in world.events:
        if "userId" in e:
            first.setdefault(e["userId"], e["timestamp"])
    for user in world.users:
        if user["id"] in first:
            assert user["traits"]["signup_date"] <= first[user["id"]][:10]


def test_personas_file_covers_exactly_the_users(world: LoadedWorld) -> None:
    assert list(world.personas) == [u["id"] for u in world.users]
    assert set(world.personas.values()) == {
        "high_value_loyalist", "browsing_enthusiast", "occasional_buyer", "new_visitor",
    }  # fmt: skip
    users_text = world.summary.users_path.read_text()
    assert not any(label in users_text for label in set(world.personas.values()))

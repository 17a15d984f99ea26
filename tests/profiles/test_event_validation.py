"""validate_event's fast paths (one C call per well-formed field) and its full checks agree:
values next to the fast path's edges get the answer the full check gives."""

from __future__ import annotations

from typing import Any

import pytest

from profiles.events import payload_hash, validate_event
from storage.fields import FieldError

NOW = 1_767_225_600.0
BASE = {"messageId": "m-1", "type": "view", "userId": "u1", "itemId": "i1"}


class Text(str):
    pass


def check(**changes: Any) -> Any:
    raw = {**BASE, **changes}
    return validate_event(raw, received_at=NOW, clock_skew_s=300.0)


@pytest.mark.parametrize(
    ("ts", "expected", "clamped"),
    [
        (NOW - 10.5, NOW - 10.5, False),  # epoch seconds (the fast path)
        ((NOW - 10) * 1000.0, NOW - 10, False),  # epoch milliseconds
        (int(NOW - 10), NOW - 10, False),  # an integer
        ("2026-01-01T00:00:00Z", NOW, False),  # ISO-8601
        (str(NOW - 1), NOW - 1, False),  # a number in a string
        (NOW + 301.0, NOW, True),  # beyond the skew: clamped
        (None, NOW, False),  # missing: the receive time
        ("", NOW, False),
    ],
)
def test_timestamps(ts: Any, expected: float, clamped: bool) -> None:
    ev = check(timestamp=ts)
    assert ev.ts == pytest.approx(expected) and bool(ev.flags & 1) == clamped


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (float("nan"), "finite"),
        (1.0, "out of range"),
        (9e9, "out of range"),
        (True, "boolean"),
        ([NOW], "got list"),
    ],
)
def test_bad_timestamps(ts: Any, reason: str) -> None:
    with pytest.raises(FieldError) as err:
        check(timestamp=ts)
    assert err.value.field == "timestamp" and reason in err.value.reason


def test_ids_outside_the_fast_path() -> None:
    ev = check(userId=42, sessionId=Text("s1"), itemId=Text("i2"))
    assert (ev.user_id, ev.session_id, ev.item_id) == ("42", "s1", "i2")
    assert ev.profile_key == "42"
    anon = validate_event(
        {"messageId": "m", "type": "search", "anonymousId": "a1", "properties": {"query": "x"}},
        received_at=NOW,
    )
    assert anon.profile_key == "anon:a1" and anon.user_id is None
    for field, value, reason in [
        ("messageId", "x" * 129, "longer than 128"),
        ("messageId", "_internal", "may contain only"),
        ("userId", "a b", "may contain only"),
        ("userId", 2**70, "64 bits"),
        ("itemId", "", "is required"),
        ("sessionId", ["s"], "must be a string id"),
    ]:
        with pytest.raises(FieldError) as err:
            check(**{field: value})
        assert (err.value.field, reason in err.value.reason) == (field, True), value


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"type": ["view"]}, "type", "unknown event type"),
        ({"type": ""}, "type", "is required"),
        ({"type": None}, "type", "is required"),
        ({"type": "View"}, "type", "unknown event type"),
        ({"channel": ["web"]}, "channel", "must be one of"),
        ({"channel": "fax"}, "channel", "must be one of"),
        ({"userId": None}, "userId", "userId or anonymousId"),
        ({"type": "identify"}, "anonymousId", "identify needs both"),
        ({"traits": {"a": 1}}, "traits", "only identify"),
        ({"properties": [1]}, "properties", "must be an object"),
        ({"channel": None}, "channel", "must be one of"),
        ({"type": "purchase", "properties": {"quantity": 0}}, "properties.quantity", "1 to"),
        ({"type": "rate"}, "properties.value", "is required"),
    ],
)
def test_rejections_name_the_first_bad_field(
    changes: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(FieldError) as err:
        check(**changes)
    assert err.value.field == field and reason in err.value.reason


def test_channel_type_and_properties_of_accepted_events() -> None:
    assert check(channel=Text("web")).channel == "web"
    assert check().channel == "api"
    purchase = check(type="purchase", properties={"price": "2.5"})
    assert purchase.properties == {"price": 2.5, "quantity": 1}
    raw = {**BASE, "type": "add_to_cart"}
    cart = validate_event(raw, received_at=NOW)
    assert cart.properties == {"quantity": 1} and cart.payload_hash == payload_hash(raw)
    custom = validate_event(
        {**BASE, "type": "wishlist"}, received_at=NOW, custom_types=("wishlist",)
    )
    assert custom.type == "wishlist" and custom.properties == {}


@pytest.mark.parametrize(
    ("price", "stored"),
    [
        (19.99, 19.99),  # an in-range float: the fast path keeps it
        (0.0, 0.0),
        (1e9, 1e9),
        (5, 5.0),  # an integer: the full check makes it a float
        ("2.5", 2.5),
        (None, None),
        ("", None),
    ],
)
def test_prices_next_to_the_fast_path(price: Any, stored: Any) -> None:
    ev = check(type="purchase", properties={"price": price})
    assert ev.properties["price"] == stored and type(ev.properties["price"]) is type(stored)


@pytest.mark.parametrize(
    ("price", "reason"),
    [
        (-0.01, ">= 0"),
        (1e9 + 1, "<= 1e+09"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "boolean"),
        ([1.0], "got list"),
    ],
)
def test_bad_prices(price: Any, reason: str) -> None:
    with pytest.raises(FieldError) as err:
        check(type="purchase", properties={"price": price})
    assert err.value.field == "properties.price" and reason in err.value.reason


def test_properties_flat_or_nested_get_the_same_checks() -> None:
    flat = {"price": 1.0, "color": "red", "gift": True, "note": None, "n": 3}
    assert check(type="purchase", properties=flat).properties == {**flat, "quantity": 1}
    nested = {"a": {"b": [1, {"c": 2}]}}
    assert check(properties=nested).properties == nested
    deep: Any = 1
    for _ in range(33):  # one level more than allowed
        deep = {"k": deep}
    for bad, reason in [
        ({"n": 2**70}, "plain JSON"),  # flat, but not plain JSON
        ({1: "x"}, "plain JSON"),  # a non-string key (imports may build one)
        ({"s": "x" * 9000}, "larger than"),  # flat and too large
        ({"a": [2**70]}, "plain JSON"),
        (deep, "nested deeper"),
    ]:
        with pytest.raises(FieldError) as err:
            check(properties=bad)
        assert err.value.field == "properties" and reason in err.value.reason, bad


def test_absent_optional_ids_are_none() -> None:
    ev = validate_event(
        {"messageId": "m", "type": "view", "anonymousId": "a1", "itemId": "i1", "userId": None},
        received_at=NOW,
    )
    assert (ev.user_id, ev.session_id, ev.profile_key) == (None, None, "anon:a1")
    assert check(sessionId="").session_id is None  # empty is absent, as before

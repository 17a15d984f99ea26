"""``new_event_record``: the fast constructor the validation loop uses builds the same record."""

from __future__ import annotations

import dataclasses

import pytest

from storage.types import EventRecord, new_event_record


def test_same_record_as_the_dataclass_constructor() -> None:
    values = (
        "m1",
        "purchase",
        "anon:a",
        1_767_225_600.5,
        1_767_225_601.0,
        "0" * 32,
        None,
        "a",
        "i9",
        "s1",
        "web",
        {"price": 3.5},
        1,
    )
    fast, slow = new_event_record(*values), EventRecord(*values)
    assert type(fast) is EventRecord and fast == slow
    assert [getattr(fast, f.name) for f in dataclasses.fields(EventRecord)] == list(values)
    assert dataclasses.replace(fast, profile_key="u") == dataclasses.replace(slow, profile_key="u")


def test_still_frozen() -> None:
    ev = new_event_record("m", "view", "u", 1.0, 2.0, "h", "u", None, "i", None, "api", {}, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.ts = 3.0  # type: ignore[misc]

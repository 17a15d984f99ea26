"""Canonical cache keys."""

from __future__ import annotations

import json
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import CacheScope, cache_key, canonical_json, scope_of, segment_scope, user_scope
from cache.keys import KEY_HEX_LENGTH

OP = "a" * 64


def test_key_is_short_lowercase_hex() -> None:
    key = cache_key(OP, {"id": 1})
    assert len(key) == KEY_HEX_LENGTH
    assert int(key, 16) >= 0
    assert key == key.lower()


def test_variable_order_and_nesting_order_are_irrelevant() -> None:
    a = json.loads('{"first": 10, "filter": {"genre": "Drama", "year": 1999}, "ids": [1, 2]}')
    b = json.loads('{"ids": [1, 2], "filter": {"year": 1999, "genre": "Drama"}, "first": 10}')
    assert cache_key(OP, a) == cache_key(OP, b)


def test_list_order_matters() -> None:
    assert cache_key(OP, {"ids": [1, 2]}) != cache_key(OP, {"ids": [2, 1]})


def test_number_spellings_share_a_key_but_bools_do_not_collide_with_ints() -> None:
    assert cache_key(OP, {"x": 1}) == cache_key(OP, {"x": 1.0})
    assert cache_key(OP, {"x": 0.0}) == cache_key(OP, {"x": -0.0})
    assert cache_key(OP, {"x": True}) != cache_key(OP, {"x": 1})
    assert cache_key(OP, {"x": 0.1}) != cache_key(OP, {"x": 0.10000000000000002})


def test_canonical_json_is_compact_sorted_and_float_stable() -> None:
    assert canonical_json({"b": [1.5, None], "a": "é"}) == '{"a":"é","b":[1.5,null]}'
    assert canonical_json({"f": 0.1 + 0.2}) == '{"f":0.30000000000000004}'


def test_none_and_empty_variables_are_the_same() -> None:
    assert cache_key(OP, None) == cache_key(OP, {})


def test_scope_and_operation_separate_keys() -> None:
    base = cache_key(OP, {"id": 1})
    seg = cache_key(OP, {"id": 1}, segment_scope(3))
    user = cache_key(OP, {"id": 1}, user_scope(3))
    assert len({base, seg, user}) == 3
    assert cache_key(OP, {"id": 1}, user_scope(4)) != user
    assert cache_key("b" * 64, {"id": 1}) != base


def test_vary_is_case_insensitive_and_order_free() -> None:
    one = cache_key(OP, {}, "", [("Accept-Language", "fr"), ("X-Segment", "7")])
    two = cache_key(OP, {}, "", {"x-segment": "7", "accept-language": "fr"})
    assert one == two
    assert cache_key(OP, {}, "", {"accept-language": "de", "x-segment": "7"}) != one
    assert cache_key(OP, {}) != one


def test_parts_cannot_be_forged_across_boundaries() -> None:
    # Without structure, op="x" + vars={"a":"b"} could collide with a crafted op string.
    assert cache_key('x",{"a":"b"}', None) != cache_key("x", {"a": "b"})


@pytest.mark.parametrize("bad", ["public", "seg:", "user:", "user:a b", "tenant:1"])
def test_malformed_scope_key_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        cache_key(OP, {}, bad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_floats_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        cache_key(OP, {"x": bad})


def test_non_json_variables_are_rejected() -> None:
    with pytest.raises(TypeError):
        cache_key(OP, {"x": object()})
    with pytest.raises(TypeError):
        cache_key(OP, {"x": {1: "int key"}})


def test_scope_of_scope_keys() -> None:
    assert scope_of("") is CacheScope.PUBLIC
    assert scope_of(segment_scope("vip")) is CacheScope.SEGMENT
    assert scope_of(user_scope(42)) is CacheScope.PRIVATE


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
@settings(max_examples=25, deadline=None)
def test_key_ignores_mapping_order_and_survives_a_json_round_trip(
    variables: dict[str, Any], rnd: Random
) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    key = cache_key(OP, variables)
    assert cache_key(OP, shuffled(variables)) == key
    assert cache_key(OP, json.loads(json.dumps(variables))) == key

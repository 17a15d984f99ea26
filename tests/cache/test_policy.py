"""Apollo Server's cache-control algorithm, table-driven."""

from __future__ import annotations

import pytest

from cache import CacheHint, CachePolicy, CacheScope, FieldFact, compute_policy
from cache.policy import resolve_field_hint

PUB, SEG, PRIV = CacheScope.PUBLIC, CacheScope.SEGMENT, CacheScope.PRIVATE


def root(
    name: str,
    *,
    composite: bool = True,
    field: CacheHint | None = None,
    typ: CacheHint | None = None,
) -> FieldFact:
    return FieldFact((name,), True, composite, field, typ)


def child(
    *path: str | int,
    composite: bool = False,
    field: CacheHint | None = None,
    typ: CacheHint | None = None,
) -> FieldFact:
    return FieldFact(tuple(path), False, composite, field, typ)


H = CacheHint
UNCACHEABLE = CachePolicy.uncacheable()

CASES: list[tuple[str, list[FieldFact], CachePolicy]] = [
    ("no fields at all", [], UNCACHEABLE),
    ("unhinted root scalar defaults to 0", [root("version", composite=False)], UNCACHEABLE),
    (
        "hinted root scalar",
        [root("version", composite=False, field=H(max_age=60))],
        CachePolicy(60),
    ),
    ("unhinted root composite defaults to 0", [root("me"), child("me", "id")], UNCACHEABLE),
    (
        "type hint on a root composite; scalars inherit",
        [root("item", typ=H(max_age=60)), child("item", "id"), child("item", "title")],
        CachePolicy(60),
    ),
    (
        "unhinted nested composite is uncacheable",
        [root("item", typ=H(max_age=60)), child("item", "similar", composite=True)],
        UNCACHEABLE,
    ),
    (
        "field hint overrides a longer type hint",
        [root("item", field=H(max_age=30), typ=H(max_age=60))],
        CachePolicy(30),
    ),
    (
        "field hint overrides a shorter type hint",
        [root("item", field=H(max_age=120), typ=H(max_age=60))],
        CachePolicy(120),
    ),
    (
        "override is per attribute: type's scope survives a field max_age",
        [root("me", field=H(max_age=30), typ=H(max_age=60, scope=PRIV))],
        CachePolicy(30, PRIV),
    ),
    (
        "scalar hint lowers the response max_age",
        [root("item", typ=H(max_age=60)), child("item", "price", field=H(max_age=10))],
        CachePolicy(10),
    ),
    (
        "field inherit_max_age on a nested composite",
        [
            root("item", typ=H(max_age=60)),
            child("item", "meta", composite=True, field=H(inherit_max_age=True)),
        ],
        CachePolicy(60),
    ),
    (
        "type inherit_max_age on a nested composite",
        [
            root("item", typ=H(max_age=60)),
            child("item", "meta", composite=True, typ=H(inherit_max_age=True)),
        ],
        CachePolicy(60),
    ),
    (
        "type max_age beats a field's inherit_max_age",
        [
            root("item", typ=H(max_age=60)),
            child("item", "meta", composite=True, field=H(inherit_max_age=True), typ=H(max_age=10)),
        ],
        CachePolicy(10),
    ),
    (
        "inherit_max_age ignores a max_age written next to it",
        [
            root("item", typ=H(max_age=60)),
            child("item", "meta", composite=True, field=H(inherit_max_age=True, max_age=5)),
        ],
        CachePolicy(60),
    ),
    (
        "inherit_max_age with a scope restricts the scope only",
        [
            root("item", typ=H(max_age=60)),
            child("item", "mine", composite=True, field=H(inherit_max_age=True, scope=PRIV)),
        ],
        CachePolicy(60, PRIV),
    ),
    (
        "inherit_max_age on a root field has nothing to inherit",
        [root("item", field=H(inherit_max_age=True))],
        UNCACHEABLE,
    ),
    (
        "chained inheritance reaches the root's max_age",
        [
            root("item", typ=H(max_age=45)),
            child("item", "a", composite=True, field=H(inherit_max_age=True)),
            child("item", "a", "b", composite=True, typ=H(inherit_max_age=True)),
            child("item", "a", "b", "c"),
        ],
        CachePolicy(45),
    ),
    (
        "most restrictive scope: SEGMENT over PUBLIC",
        [root("trending", field=H(max_age=60)), root("forYou", field=H(max_age=120, scope=SEG))],
        CachePolicy(60, SEG),
    ),
    (
        "most restrictive scope: PRIVATE over SEGMENT",
        [
            root("forYou", field=H(max_age=60, scope=SEG)),
            root("me", field=H(max_age=60, scope=PRIV)),
        ],
        CachePolicy(60, PRIV),
    ),
    (
        "minimum over list items",
        [
            root("items", typ=H(max_age=60)),
            child("items", 0, "price", field=H(max_age=20)),
            child("items", 1, "price", field=H(max_age=15)),
        ],
        CachePolicy(15),
    ),
    (
        "windows: minimum of the stated ones",
        [
            root("item", typ=H(max_age=60, swr=30, sie=300)),
            child("item", "price", field=H(max_age=20, swr=10)),
        ],
        CachePolicy(20, PUB, stale_while_revalidate=10, stale_if_error=300),
    ),
    (
        "field windows override type windows",
        [root("item", field=H(swr=5), typ=H(max_age=60, swr=30))],
        CachePolicy(60, stale_while_revalidate=5),
    ),
    (
        "one uncacheable field sinks everything, windows too",
        [root("item", typ=H(max_age=60, swr=30)), root("me")],
        UNCACHEABLE,
    ),
    (
        "explicit max_age 0 on a scalar",
        [root("item", typ=H(max_age=60)), child("item", "stock", field=H(max_age=0))],
        UNCACHEABLE,
    ),
]


@pytest.mark.parametrize(("fields", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compute_policy(fields: list[FieldFact], expected: CachePolicy) -> None:
    assert compute_policy(fields) == expected


def test_default_max_age_applies_to_unhinted_roots_and_composites() -> None:
    fields = [root("me"), child("me", "friends", composite=True), child("me", "id")]
    assert compute_policy(fields, default_max_age=5) == CachePolicy(5)


def test_default_windows_apply_only_when_no_field_states_one() -> None:
    hinted = [root("item", typ=H(max_age=60))]
    assert compute_policy(hinted, default_swr=30, default_sie=600) == CachePolicy(
        60, stale_while_revalidate=30, stale_if_error=600
    )
    stated = [root("item", typ=H(max_age=60, swr=3))]
    assert compute_policy(stated, default_swr=30).stale_while_revalidate == 3


def test_resolve_field_hint_marks_inheriting_fields() -> None:
    assert resolve_field_hint(child("item", "title")) == H(inherit_max_age=True)
    assert resolve_field_hint(root("item")) == H(max_age=0)


@pytest.mark.parametrize(
    ("a", "b", "merged"),
    [
        (CachePolicy(60), CachePolicy(30), CachePolicy(30)),
        (CachePolicy(60, SEG), CachePolicy(90, PUB), CachePolicy(60, SEG)),
        (CachePolicy(60, PRIV), CachePolicy(90, SEG), CachePolicy(60, PRIV)),
        (
            CachePolicy(60, stale_while_revalidate=10, stale_if_error=100),
            CachePolicy(60, stale_while_revalidate=20, stale_if_error=50),
            CachePolicy(60, stale_while_revalidate=10, stale_if_error=50),
        ),
        (
            CachePolicy(60, stale_while_revalidate=10),
            CachePolicy.uncacheable(),
            CachePolicy.uncacheable(),
        ),
    ],
)
def test_merge_is_symmetric_and_most_restrictive(
    a: CachePolicy, b: CachePolicy, merged: CachePolicy
) -> None:
    assert a.merge(b) == merged
    assert b.merge(a) == merged


def test_cacheability_and_retention() -> None:
    assert CachePolicy(1).is_cacheable
    assert not CachePolicy.uncacheable().is_cacheable
    assert CachePolicy(60, stale_while_revalidate=30, stale_if_error=300).retention == 360
    assert CachePolicy(0, stale_if_error=300).retention == 0
    assert PUB < SEG < PRIV
    with pytest.raises(ValueError):
        CachePolicy(-1)

"""Apollo Server's cache-control algorithm as a pure function over resolved-field facts.

The GraphQL layer records one ``FieldFact`` per resolved field (hints from the schema or set
dynamically by the resolver) and calls ``compute_policy`` once per response. Semantics follow
``@apollo/server``'s cache-control plugin:

* A field's own hint overrides the hint of its (composite) return type, attribute by attribute.
* Root fields and fields returning composites get ``default_max_age`` (0 = not cacheable)
  unless some hint gives them a ``max_age`` -- so every object-returning field must be hinted.
* Scalar fields, and fields marked ``inherit_max_age``, inherit their parent's ``max_age``.
* The response's ``max_age`` is the minimum over fields; its scope the most restrictive one.

"Inherit" needs no parent lookup: a parent always contributes its own ``max_age`` to the
minimum (root fields always have one), so a field with the parent's ``max_age`` can never
lower it. An inheriting field therefore just contributes nothing to ``max_age``.

Extension beyond Apollo: ``swr``/``sie`` windows. A window only constrains the response when
some field states it (the minimum of the stated ones); unstated windows fall back to
``default_swr``/``default_sie``. Rationale: windows are opt-in allowances, unlike max_age where
silence must mean "do not cache".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from cache.types import CacheHint, CachePolicy, CacheScope, FieldFact


def _overlay(base: CacheHint, hint: CacheHint) -> CacheHint:
    """``base`` with every attribute that ``hint`` specifies replaced (Apollo's ``replace``)."""
    return CacheHint(
        max_age=base.max_age if hint.max_age is None else hint.max_age,
        scope=base.scope if hint.scope is None else hint.scope,
        inherit_max_age=base.inherit_max_age,
        swr=base.swr if hint.swr is None else hint.swr,
        sie=base.sie if hint.sie is None else hint.sie,
    )


def resolve_field_hint(fact: FieldFact, *, default_max_age: int = 0) -> CacheHint:
    """The contribution of one field: ``max_age is None`` means "inherits from its parent"."""
    hint = CacheHint()
    inherit = False
    if fact.returns_composite and fact.type_hint is not None:
        type_hint = fact.type_hint
        if type_hint.inherit_max_age:
            # Apollo ignores a maxAge written next to inheritMaxAge.
            type_hint = replace(type_hint, max_age=None)
            inherit = True
        hint = _overlay(hint, type_hint)
    field_hint = fact.field_hint
    if field_hint is not None:
        if field_hint.inherit_max_age:
            # A type's explicit max_age wins over a field's inheritMaxAge (as in Apollo).
            inherit = inherit or hint.max_age is None
            field_hint = replace(field_hint, max_age=None)
        hint = _overlay(hint, field_hint)
    if hint.max_age is None and ((fact.returns_composite and not inherit) or fact.is_root):
        hint = replace(hint, max_age=default_max_age)
    return replace(hint, inherit_max_age=hint.max_age is None)


def compute_policy(
    fields: Iterable[FieldFact],
    *,
    default_max_age: int = 0,
    default_swr: int = 0,
    default_sie: int = 0,
) -> CachePolicy:
    """The response's policy; ``CachePolicy.uncacheable()`` when any field forbids caching.

    An empty operation (no fields) is uncacheable, like Apollo's undefined maxAge.
    """
    max_age: int | None = None
    scope = CacheScope.PUBLIC
    swr: int | None = None
    sie: int | None = None
    for fact in fields:
        hint = resolve_field_hint(fact, default_max_age=default_max_age)
        if hint.max_age is not None:
            max_age = hint.max_age if max_age is None else min(max_age, hint.max_age)
        if hint.scope is not None:
            scope = max(scope, hint.scope)
        if hint.swr is not None:
            swr = hint.swr if swr is None else min(swr, hint.swr)
        if hint.sie is not None:
            sie = hint.sie if sie is None else min(sie, hint.sie)
    if not max_age:
        return CachePolicy.uncacheable()
    return CachePolicy(
        max_age=max_age,
        scope=scope,
        stale_while_revalidate=default_swr if swr is None else swr,
        stale_if_error=default_sie if sie is None else sie,
    )

"""Cache hints for the schema: the ``@cacheControl`` directive, runtime hints and the recorder.

* ``CacheControl`` is a strawberry schema directive, so it shows in the SDL::

      directive @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean,
          staleWhileRevalidate: Int, staleIfError: Int) on OBJECT | FIELD_DEFINITION | INTERFACE | UNION

  Put it on types (``@strawberry.type(directives=[CacheControl(max_age=300)])``) and fields
  (``@strawberry.field(directives=[...])``). Ages and windows are seconds.
* ``CacheControlRecorder`` is a graphql-core middleware (``execute(..., middleware=[rec])``)
  that turns every resolved field into one ``cache.FieldFact`` and collects entity tags
  (``item:42``, ``user:u1``, ``type:Item``); ``policy()`` then runs ``cache.compute_policy``.
* Resolvers add hints at run time through ``info``: ``set_cache_hint(info, max_age=0)``,
  ``add_cache_tags(info, "segment:3")``, and ``viewer_segment(info)`` (which also restricts the
  field to at least SEGMENT scope: an answer that read the segment varies with it).

The scope follows what the resolvers read, by construction, not a default:

* who is asking is reachable only as ``TailorContext.viewer``, a property that calls
  ``CacheControlRecorder.note_viewer_read``: the whole answer is then PRIVATE (its id, anonymous
  id, scopes, consent, taste -- anything derived from the caller varies with the caller);
* the caller's segment alone is ``viewer_segment(info)``: SEGMENT, not PRIVATE;
* a person's data (``profile_state``, ``person_data``: profile, history, consent, segments of a
  profile key) is PRIVATE whoever asked for it.

The recorder reaches resolvers as the ``cache_control`` attribute of the request context; with
no recorder (e.g. a script executing the schema directly) the runtime API is a no-op.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import strawberry
from graphql import (
    GraphQLField,
    GraphQLNamedType,
    GraphQLResolveInfo,
    get_named_type,
    is_composite_type,
)
from graphql.pyutils import Path, is_awaitable
from graphql.type.introspection import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from strawberry.schema_directive import Location

from cache import CacheHint, CachePolicy, CacheScope, FieldFact, compute_policy
from profiles.state import ProfileState

# Object types whose instances are purge targets: GraphQL type name -> tag prefix. A resolved
# object of one of these types tags the response with ``<prefix>:<id>`` and ``type:<Name>``.
ENTITY_TYPES: dict[str, str] = {"Item": "item", "User": "user"}
# Types tagged ``type:<Name>`` only (no id): model output, purged as a whole on a model swap.
TYPE_TAGGED: frozenset[str] = frozenset({"Recommendation"})

SegmentOf = Callable[[str], "str | None"]

_META_FIELDS: dict[str, GraphQLField] = {
    "__schema": SchemaMetaFieldDef,
    "__type": TypeMetaFieldDef,
    "__typename": TypeNameMetaFieldDef,
}


@strawberry.enum(description="Who may share a cached answer: everyone, one segment, one user.")
class CacheControlScope(enum.Enum):
    PUBLIC = "PUBLIC"
    SEGMENT = "SEGMENT"
    PRIVATE = "PRIVATE"


_SCOPES = {
    CacheControlScope.PUBLIC: CacheScope.PUBLIC,
    CacheControlScope.SEGMENT: CacheScope.SEGMENT,
    CacheControlScope.PRIVATE: CacheScope.PRIVATE,
}


@strawberry.schema_directive(
    locations=[Location.OBJECT, Location.FIELD_DEFINITION, Location.INTERFACE, Location.UNION],
    name="cacheControl",
    description="How long (seconds) and for whom an answer may be cached (Apollo semantics).",
)
class CacheControl:
    max_age: int | None = strawberry.UNSET
    scope: CacheControlScope | None = strawberry.UNSET
    inherit_max_age: bool | None = strawberry.UNSET
    stale_while_revalidate: int | None = strawberry.UNSET
    stale_if_error: int | None = strawberry.UNSET


def _set(value: Any) -> Any:
    return None if value is None or value is strawberry.UNSET else value


def hint_of(directive: CacheControl) -> CacheHint:
    """The ``cache.CacheHint`` a ``@cacheControl`` directive stands for."""
    scope = _set(directive.scope)
    return CacheHint(
        max_age=_set(directive.max_age),
        scope=None if scope is None else _SCOPES[scope],
        inherit_max_age=bool(_set(directive.inherit_max_age)),
        swr=_set(directive.stale_while_revalidate),
        sie=_set(directive.stale_if_error),
    )


def _directive_hint(definition: Any) -> CacheHint | None:
    for directive in getattr(definition, "directives", None) or ():
        if isinstance(directive, CacheControl):
            return hint_of(directive)
    return None


def field_hint(field: GraphQLField) -> CacheHint | None:
    """The static hint on a field definition (``None`` when it has none)."""
    return _directive_hint((field.extensions or {}).get("strawberry-definition"))


def type_hint(named: GraphQLNamedType) -> CacheHint | None:
    """The static hint on a named type (``None`` when it has none)."""
    return _directive_hint((named.extensions or {}).get("strawberry-definition"))


def _overlay(base: CacheHint | None, extra: CacheHint) -> CacheHint:
    if base is None:
        return extra
    return CacheHint(
        max_age=base.max_age if extra.max_age is None else extra.max_age,
        scope=base.scope if extra.scope is None else extra.scope,
        inherit_max_age=extra.inherit_max_age or base.inherit_max_age,
        swr=base.swr if extra.swr is None else extra.swr,
        sie=base.sie if extra.sie is None else extra.sie,
    )


# (parent type, field name) -> (field hint, type hint, returns composite, named return type)
_Static = tuple[CacheHint | None, CacheHint | None, bool, str]


class CacheControlRecorder:
    """Per-request collector of field facts and entity tags; a graphql-core middleware.

    ``segment``: the segment id the gateway resolved for this request (``None``: no segment,
    the generic answer); ``variants``: the recommendation variants a SEGMENT answer is computed
    for (``exp=variant;…``, '' for none; ``resolvers.experiments.viewer_variants``). ``default_max_age``: for root and object fields without a hint.
    Not shared between requests; the static hint table is (``statics``).
    """

    def __init__(
        self,
        *,
        segment: str | None = None,
        default_max_age: int = 0,
        statics: dict[tuple[str, str], _Static] | None = None,
        variants: str = "",
    ) -> None:
        self.segment = segment
        self.variants = variants
        self.default_max_age = default_max_age
        self.tags: set[str] = set()
        self.segment_read = False
        # A resolver read the caller (``TailorContext.viewer``): the answer is PRIVATE.
        self.viewer_read = False
        # Facts that differ only by path count once: compute_policy never looks at the path
        # beyond is_root, and a list of 100 items must not mean 100 x fields facts.
        self._facts: dict[tuple[Any, ...], FieldFact] = {}
        self._dynamic: dict[Path, CacheHint] = {}
        self._statics = statics if statics is not None else {}
        self._tagged: set[int] = set()

    # -- middleware ------------------------------------------------------------------------

    def resolve(
        self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any
    ) -> Any:
        result = next_(root, info, **args)
        if is_awaitable(result):
            return self._after_async(result, root, info)
        self._record(root, info)
        return result

    async def _after_async(
        self, result: Awaitable[Any], root: Any, info: GraphQLResolveInfo
    ) -> Any:
        try:
            return await result
        finally:
            self._record(root, info)

    def _static(self, info: GraphQLResolveInfo) -> _Static:
        key = (info.parent_type.name, info.field_name)
        found = self._statics.get(key)
        if found is None:
            # Meta fields (__typename, __schema, __type) are not in ``fields``: the introspection
            # roots then count as unhinted objects (not cacheable), __typename as a scalar.
            field = info.parent_type.fields.get(info.field_name) or _META_FIELDS[info.field_name]
            named = get_named_type(field.type)
            composite = is_composite_type(named)
            found = (
                field_hint(field),
                type_hint(named) if composite else None,
                composite,
                named.name,
            )
            self._statics[key] = found
        return found

    def _record(self, root: Any, info: GraphQLResolveInfo) -> None:
        f_hint, t_hint, composite, _name = self._static(info)
        dynamic = self._dynamic.pop(info.path, None) if self._dynamic else None
        if dynamic is not None:
            f_hint = _overlay(f_hint, dynamic)
        is_root = info.path.prev is None
        fact_key = (f_hint, t_hint, composite, is_root)
        if fact_key not in self._facts:
            self._facts[fact_key] = FieldFact(
                path=tuple(info.path.as_list()),
                is_root=is_root,
                returns_composite=composite,
                field_hint=f_hint,
                type_hint=t_hint,
            )
        parent = info.parent_type
        prefix = ENTITY_TYPES.get(parent.name)
        if prefix is not None and id(root) not in self._tagged:
            self._tagged.add(id(root))
            entity_id = getattr(root, "id", None)
            if entity_id is not None:
                self.tags.add(f"{prefix}:{entity_id}")
            self.tags.add(f"type:{parent.name}")
        elif parent.name in TYPE_TAGGED:
            self.tags.add(f"type:{parent.name}")

    # -- runtime API (through the helpers below) -------------------------------------------

    def set_hint(self, path: Path, hint: CacheHint) -> None:
        current = self._dynamic.get(path)
        self._dynamic[path] = hint if current is None else _overlay(current, hint)

    def restrict_scope(self, path: Path, scope: CacheScope) -> None:
        current = self._dynamic.get(path) or CacheHint()
        if current.scope is None or current.scope < scope:
            self._dynamic[path] = replace(current, scope=scope)

    def note_viewer_read(self) -> None:
        """A resolver read who is asking: no answer of this request is shared with anyone else.

        Response-wide, not per field: a response's scope is the most restrictive of its fields,
        and the context that reports the read does not know which field is resolving.
        """
        self.viewer_read = True

    # -- results ---------------------------------------------------------------------------

    @property
    def facts(self) -> list[FieldFact]:
        return list(self._facts.values())

    def policy(self, *, default_swr: int = 0, default_sie: int = 0) -> CachePolicy:
        """The response's policy from every field resolved so far (Apollo's algorithm);
        PRIVATE whenever a resolver read the caller."""
        policy = compute_policy(
            self._facts.values(),
            default_max_age=self.default_max_age,
            default_swr=default_swr,
            default_sie=default_sie,
        )
        if self.viewer_read and policy.is_cacheable and policy.scope < CacheScope.PRIVATE:
            policy = replace(policy, scope=CacheScope.PRIVATE)
        return policy


def recorder_of(info: GraphQLResolveInfo | Any) -> CacheControlRecorder | None:
    """The request's recorder, if the gateway installed one on the context."""
    recorder = getattr(info.context, "cache_control", None)
    return recorder if isinstance(recorder, CacheControlRecorder) else None


def install(context: Any, recorder: CacheControlRecorder) -> None:
    """Make ``recorder`` reachable from resolvers as ``info.context.cache_control``."""
    context.cache_control = recorder


def set_cache_hint(
    info: Any,
    *,
    max_age: int | None = None,
    scope: CacheScope | None = None,
    inherit_max_age: bool = False,
    stale_while_revalidate: int | None = None,
    stale_if_error: int | None = None,
) -> None:
    """Override this field's hint at run time, attribute by attribute (seconds)."""
    recorder = recorder_of(info)
    if recorder is not None:
        recorder.set_hint(
            info.path,
            CacheHint(max_age, scope, inherit_max_age, stale_while_revalidate, stale_if_error),
        )


def add_cache_tags(info: Any, *tags: str) -> None:
    """Tag the response (``Surrogate-Key``/``Cache-Tag`` and the gateway's purge index)."""
    recorder = recorder_of(info)
    if recorder is not None:
        recorder.tags.update(tags)


def person_data(info: Any) -> None:
    """Mark this field PRIVATE: it shows one person's data (profile, history, consent, segments),
    whoever asked for it. ``profile_state`` calls it; so must any other reader of such data."""
    recorder = recorder_of(info)
    if recorder is not None:
        recorder.restrict_scope(info.path, CacheScope.PRIVATE)


def viewer_segment(info: Any) -> str | None:
    """The caller's segment id (``None``: generic answer) and mark the field SEGMENT-scoped.

    Segment-dependent resolvers (e.g. ``segmentRecommendations``) must read the segment through
    this function, so the response cannot be cached more widely than that. It does not read the
    viewer when the gateway installed a recorder (the segment is the recorder's), so the answer
    stays SEGMENT, not PRIVATE.
    """
    recorder = recorder_of(info)
    if recorder is None:
        key = info.context.viewer.profile_key
        return info.context.services.segment_of(key) if key else None
    recorder.segment_read = True
    recorder.restrict_scope(info.path, CacheScope.SEGMENT)
    if recorder.segment is not None:
        recorder.tags.add(f"segment:{recorder.segment}")
    return recorder.segment


async def profile_state(info: Any, profile_key: str) -> ProfileState | None:
    """The profile of ``profile_key`` through the app's profile cache (if one is installed).

    Tags the response ``user:<profile_key>`` so that the user's next event purges every cached
    answer built from this profile (an anonymous visitor's answer may read a linked user's), and
    makes the field PRIVATE (``person_data``).
    """
    services = info.context.services
    person_data(info)
    add_cache_tags(info, f"user:{profile_key}")
    cache = services.profile_cache
    if cache is None:
        state: ProfileState | None = services.ingest.profile(profile_key)
        return state
    cached = cache.get(profile_key)
    if cached is not None:
        return cached
    # The store read is synchronous on the event loop, so no invalidation can run between it
    # and the ``set`` (no fence needed); ObjectCache cannot hold None, so absent profiles are
    # simply re-read (one indexed query).
    loaded: ProfileState | None = services.ingest.profile(profile_key)
    if loaded is not None:
        cache.set(profile_key, loaded, tags=[f"user:{profile_key}"])
    return loaded

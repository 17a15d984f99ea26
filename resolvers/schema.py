"""The GraphQL schema: queries, mutations and their input types."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.scalars import JSON
from strawberry.types import Info

from profiles.events import validate_traits
from recommend.types import Recommendation as Rec
from resolvers import recommendations
from resolvers import segments as segments_gql
from resolvers.arguments import clamp_first, id_arg
from resolvers.cache_control import CacheControl, CacheControlScope
from resolvers.context import IDENTIFY_EVIDENCE, TailorContext
from resolvers.errors import BadUserInput, Forbidden, Unauthenticated, from_domain
from resolvers.types import Channel, EventType, Item, Recommendation
from resolvers.user import User
from storage.fields import FieldError


async def _trending(
    info: Info[TailorContext, Any], first: int, category: str | None
) -> list[Recommendation]:
    n = clamp_first(info, first)
    ids, scores = info.context.services.trending.top(n, category=category)
    reason = f"Trending in {category}" if category else "Trending now"
    recs = [Rec(i, float(s), "trending", reason) for i, s in zip(ids, scores, strict=True)]
    return await recommendations.materialize(info, recs, "trending")


@strawberry.type
class Query:
    @strawberry.field(
        description="The caller: the signed-in user, or the anonymous visitor of X-Anonymous-Id."
    )
    def me(self, info: Info[TailorContext, Any]) -> User | None:
        viewer = info.context.viewer
        if viewer.user_id:
            return User(
                id=strawberry.ID(viewer.user_id), anonymous=False, _profile_key=viewer.user_id
            )
        if viewer.anonymous_id:
            # The anonymous profile the header names, never the user it was linked to: the
            # header is a claim anyone can make.
            return User(
                id=strawberry.ID(viewer.anonymous_id),
                anonymous=True,
                _profile_key=viewer.profile_key or "",
            )
        return None

    @strawberry.field(description="Any user by id. Needs a token with the admin or service scope.")
    def user(self, info: Info[TailorContext, Any], id: strawberry.ID) -> User | None:
        viewer = info.context.viewer
        uid = id_arg(str(id), "id")
        if not viewer.is_privileged and viewer.user_id != uid:
            raise Forbidden("user(id) needs a token with the admin or service scope")
        store = info.context.services.store
        if store.get_user(uid) is None and store.get_profile_state(uid) is None:
            return None
        return User(id=strawberry.ID(uid), anonymous=False, _profile_key=uid)

    @strawberry.field(description="One item by id; null when it does not exist.")
    async def item(self, info: Info[TailorContext, Any], id: strawberry.ID) -> Item | None:
        rec = await info.context.items.load(id_arg(str(id), "id"))
        return Item.from_record(rec) if rec else None

    @strawberry.field(
        description="Items by ids, in the same order; null where an id does not exist."
    )
    async def items(
        self, info: Info[TailorContext, Any], ids: list[strawberry.ID]
    ) -> list[Item | None]:
        if len(ids) > info.context.services.max_first:
            raise BadUserInput(f"at most {info.context.services.max_first} ids per request")
        recs = await info.context.items.load_many([id_arg(str(i), "ids") for i in ids])
        return [Item.from_record(r) if r else None for r in recs]

    # Cache hints: Item/User/Profile carry theirs on the type (resolvers/types.py). Hook for
    # SEGMENT: a segment-dependent field (segmentRecommendations) gets
    # CacheControl(max_age=..., scope=CacheControlScope.SEGMENT) and reads the caller's segment
    # with resolvers.cache_control.viewer_segment(info).
    @strawberry.field(
        description="Items with the most time-decayed engagement right now.",
        directives=[
            CacheControl(
                max_age=30,
                scope=CacheControlScope.PUBLIC,
                stale_while_revalidate=30,
                stale_if_error=600,
            )
        ],
    )
    async def trending(
        self, info: Info[TailorContext, Any], first: int = 10, category: str | None = None
    ) -> list[Recommendation]:
        return await _trending(info, first, category)

    segments: list[segments_gql.Segment] = strawberry.field(
        resolver=segments_gql.all_segments,
        description="Every segment (clusters first, then rule segments) with live sizes.",
    )
    segment: segments_gql.Segment | None = strawberry.field(
        resolver=segments_gql.segment, description="One segment by id; null when unknown."
    )
    similar_items: list[Recommendation] = strawberry.field(
        resolver=recommendations.similar_items,
        description="Items most similar in content to `itemId` (embeddings + FAISS).",
    )
    search: list[Recommendation] = strawberry.field(
        resolver=recommendations.search,
        description="Semantic search over the catalog; `personalized` blends in the caller's taste.",
    )
    segment_recommendations: list[Recommendation] = strawberry.field(
        resolver=recommendations.segment_recommendations,
        description="Popular now in a segment (default: the caller's): the same for everyone in it.",
        directives=[
            CacheControl(
                max_age=300,
                scope=CacheControlScope.SEGMENT,
                stale_while_revalidate=60,
                stale_if_error=3600,
            )
        ],
    )


@strawberry.input(description="One behavioural event (see the README for the rules per type).")
class EventInput:
    message_id: str
    type: EventType
    custom_type: str | None = strawberry.field(
        default=None,
        description="With `type: custom`: one of the configured `custom_event_types`.",
    )
    user_id: str | None = None
    anonymous_id: str | None = None
    item_id: str | None = None
    session_id: str | None = None
    channel: Channel | None = None
    timestamp: JSON | None = strawberry.field(
        default=None, description="ISO-8601 with offset, or epoch seconds/milliseconds."
    )
    properties: JSON | None = None


@strawberry.type
class EventOutcome:
    index: int
    status: str = strawberry.field(
        description="accepted, duplicate, conflict, rejected or dropped."
    )
    message_id: str | None
    field: str | None
    reason: str | None
    clamped: bool


@strawberry.type
class TrackResult:
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[EventOutcome]


@strawberry.type
class IdentifyResult:
    user_id: str
    anonymous_id: str
    status: str


def _event_type(e: EventInput) -> str:
    """The event's wire type: the enum's value, or ``customType`` for ``type: custom``."""
    if e.type is EventType.custom:
        if not e.custom_type:
            raise BadUserInput("`type: custom` needs `customType` (one of custom_event_types)")
        return e.custom_type
    if e.custom_type is not None:
        raise BadUserInput(f"`customType` goes with `type: custom`, not `type: {e.type.value}`")
    return str(e.type.value)


def _event_dict(e: EventInput) -> dict[str, Any]:
    raw = {
        "messageId": e.message_id,
        "type": _event_type(e),
        "userId": e.user_id,
        "anonymousId": e.anonymous_id,
        "itemId": e.item_id,
        "sessionId": e.session_id,
        "channel": e.channel.value if e.channel is not None else None,
        "timestamp": e.timestamp,
        "properties": e.properties,
    }
    return {k: v for k, v in raw.items() if v is not None}


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Record events for the caller. Users send only their own events (others are "
        "rejected per event) unless the token has the admin or service scope; missing ids "
        "default to the caller's."
    )
    async def track(self, info: Info[TailorContext, Any], events: list[EventInput]) -> TrackResult:
        viewer = info.context.viewer
        raws = [viewer.prepare_event(_event_dict(e)) for e in events]
        try:
            result = await info.context.services.ingest.ingest(raws, viewer.authorize_event)
        except Exception as exc:
            raise from_domain(exc) from exc
        outcomes = [
            EventOutcome(
                index=r.index,
                status=r.status,
                message_id=r.message_id,
                field=r.field,
                reason=r.reason,
                clamped=r.clamped,
            )
            for r in result.results
        ]
        return TrackResult(
            accepted=result.count("accepted"),
            duplicates=result.count("duplicate"),
            conflicts=result.count("conflict"),
            rejected=result.count("rejected"),
            results=outcomes,
        )

    @strawberry.mutation(
        description="Link an anonymous visitor to a signed-in user; the history joins the profile. "
        "A user identifies only the anonymous id of their own session (sent as X-Anonymous-Id); "
        "an admin or service token may identify any (with userId). An id linked to another "
        "user is never re-linked (FORBIDDEN)."
    )
    async def identify(
        self,
        info: Info[TailorContext, Any],
        anonymous_id: str,
        user_id: str | None = None,
        traits: JSON | None = None,
    ) -> IdentifyResult:
        """Evidence for claiming an anonymous id: the request's own ``X-Anonymous-Id`` equals
        it (the client session that browsed anonymously is the one signing in), or the caller
        has the admin or service scope (a server-side identify). Without it the answer is
        FORBIDDEN, whether or not the id is linked. With it, an id already linked to another
        user is still FORBIDDEN (the link never moves); the same pair again is ``duplicate``.
        The event's message id is internal (``_identify:…``), so no client event can block it.
        """
        viewer = info.context.viewer
        uid = user_id or viewer.user_id
        if uid is None:
            raise Unauthenticated(
                "identify needs a signed-in user (or userId with a service token)"
            )
        if not viewer.is_privileged and uid != viewer.user_id:
            raise Forbidden("a user can only identify as themselves")
        aid = id_arg(anonymous_id, "anonymousId")
        uid = id_arg(uid, "userId")
        if not viewer.is_privileged and viewer.anonymous_id != aid:
            raise Forbidden(IDENTIFY_EVIDENCE)
        services = info.context.services
        merge: dict[str, Any] = {}
        if traits is not None:
            try:
                merge = validate_traits(traits, "`traits`")
                services.check_traits(uid, merge)
            except FieldError as exc:
                raise BadUserInput(f"{exc.field} {exc.reason}") from None
        try:
            outcome = await services.ingest.link(aid, uid)
        except Exception as exc:
            raise from_domain(exc) from exc
        if outcome.status == "rejected":
            if outcome.field == "anonymousId":
                raise Forbidden(f"anonymousId: {outcome.reason}")
            raise BadUserInput(f"{outcome.field}: {outcome.reason}")
        if merge:
            try:
                services.merge_traits(uid, merge)
            except FieldError as exc:  # another request grew the traits meanwhile
                raise BadUserInput(f"`traits` {exc.reason}") from None
        return IdentifyResult(user_id=uid, anonymous_id=aid, status=outcome.status)


class WriteAccess(FieldExtension):
    """Refuses a mutation to a read-only caller (FORBIDDEN) before its resolver runs.

    ``build_schema`` puts it on every root mutation field, the privacy ones included, so a new
    mutation is guarded without remembering to; the per-field rules (own data vs anyone's)
    stay in the resolvers."""

    def __init__(self, operation: str) -> None:
        super().__init__()
        self.operation = operation

    def _check(self, info: Info[TailorContext, Any]) -> None:
        denied = info.context.viewer.write_denied(self.operation)
        if denied is not None:
            raise Forbidden(denied)

    def resolve(
        self, next_: Callable[..., Any], source: Any, info: Info[TailorContext, Any], **kwargs: Any
    ) -> Any:
        self._check(info)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self,
        next_: Callable[..., Awaitable[Any]],
        source: Any,
        info: Info[TailorContext, Any],
        **kwargs: Any,
    ) -> Any:
        self._check(info)
        return await next_(source, info, **kwargs)


def build_schema() -> strawberry.Schema:
    # Privacy fields (consent, erasure) live in resolvers/privacy.py and are merged in here.
    from strawberry.tools import merge_types
    from strawberry.utils.str_converters import to_camel_case

    from resolvers.privacy import PrivacyMutation, PrivacyQuery

    query = merge_types("Query", (Query, PrivacyQuery))
    mutation = merge_types("Mutation", (Mutation, PrivacyMutation))
    definition = mutation.__strawberry_definition__  # type: ignore[attr-defined]
    guarded = []
    for f in definition.fields:  # copies: the source types' fields stay as declared
        g = copy.copy(f)
        g.extensions = [*f.extensions, WriteAccess(f.graphql_name or to_camel_case(f.name))]
        guarded.append(g)
    definition.fields = guarded
    return strawberry.Schema(query=query, mutation=mutation)

"""GraphQL for retrieval and recommendations: similarItems, search, User.recommendations,
segmentRecommendations.

CPU work (query encoding, CF scoring, FAISS search) runs in a worker thread, off the event loop.

A profile's segment comes from the one lookup ``Services.segment_of``; its name from the
serving segment model. Without a segment model, segment answers are empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import strawberry
from strawberry.types import Info

from embeddings import EmbeddingError
from experiments import RecoParams
from experiments.assign import variants_label
from observability.tracing import traced
from recommend.engine import RecommendRequest
from recommend.filters import ItemFilter
from recommend.types import Recommendation as Rec
from resolvers.arguments import clamp_first, id_arg
from resolvers.cache_control import add_cache_tags, person_data, profile_state, viewer_segment
from resolvers.context import Services, TailorContext
from resolvers.errors import BadUserInput, ServiceUnavailable
from resolvers.experiments import person_assignment, viewer_variants
from resolvers.inputs import ItemFilterInput, RecommendationContext, Strategy
from resolvers.types import Item, Recommendation, RecommendationSource
from storage.types import user_id_of


def to_filter(f: ItemFilterInput | None, max_ids: int = 1000) -> ItemFilter:
    if f is None:
        return ItemFilter()
    if f.exclude_ids and len(f.exclude_ids) > max_ids:
        raise BadUserInput(f"at most {max_ids} excludeIds")
    if f.attributes is not None and not isinstance(f.attributes, dict):
        raise BadUserInput("`filter.attributes` must be an object")
    if f.price_min is not None and f.price_max is not None and f.price_min > f.price_max:
        raise BadUserInput("`filter.priceMin` is greater than `filter.priceMax`")
    return ItemFilter(
        exclude_ids=frozenset(str(i) for i in f.exclude_ids or ()),
        categories=frozenset(f.categories) if f.categories else None,
        exclude_categories=frozenset(f.exclude_categories or ()),
        price_min=f.price_min,
        price_max=f.price_max,
        available_only=f.available_only,
        attributes=dict(f.attributes or {}),
    )


@traced("resolve.items")
async def materialize(
    info: Info[TailorContext, Any],
    recs: list[Rec],
    strategy: str,
    variants: Mapping[str, str] | None = None,
) -> list[Recommendation]:
    """GraphQL recommendations with the list's ``recommendationId`` (naming ``strategy``, the
    ``variants`` that shaped it and each item's source) and the variants' label."""
    items = await info.context.items.load_many([r.item_id for r in recs])
    served = [(r, it) for r, it in zip(recs, items, strict=True) if it is not None]
    experiments = info.context.services.experiments
    rid = None
    if experiments is not None:
        rid = experiments.recommendation_id(
            strategy, variants or {}, {r.item_id: r.source for r, _ in served}
        )
    label = variants_label(variants) if variants else None
    return [
        Recommendation(
            item=Item.from_record(it),
            score=round(float(r.score), 6),
            reason=r.reason,
            source=RecommendationSource(r.source),
            recommendation_id=rid,
            variant=label,
        )
        for r, it in served
    ]


def with_variant(f: ItemFilter, params: RecoParams) -> ItemFilter:
    """The request's filter with a variant's filter fields over it."""
    v = params.filter
    if not v:
        return f
    return dataclasses.replace(
        f,
        categories=frozenset(v["categories"]) if "categories" in v else f.categories,
        exclude_categories=frozenset(v["excludeCategories"])
        if "excludeCategories" in v
        else f.exclude_categories,
        price_min=v.get("priceMin", f.price_min),
        price_max=v.get("priceMax", f.price_max),
        available_only=v.get("availableOnly", f.available_only),
    )


@traced("resolve.similar_items")
async def similar_items(
    info: Info[TailorContext, Any],
    item_id: strawberry.ID,
    first: int = 10,
    filter: ItemFilterInput | None = None,
) -> list[Recommendation]:
    services = info.context.services
    iid = id_arg(str(item_id), "itemId")
    n = clamp_first(info, first)
    source = services.catalog.item(iid)
    if source is None:
        raise BadUserInput(f"unknown item {iid!r}")
    content = services.content
    if not content.has_item(iid):
        raise ServiceUnavailable("the item index is not built yet (run `tailor train index`)")
    sf = to_filter(filter).search_filter(services.catalog.all_items)
    ids, scores = await asyncio.to_thread(content.similar, iid, n, sf)
    reason = f"Similar to {source.title}"
    return await materialize(
        info,
        [Rec(i, float(s), "content", reason) for i, s in zip(ids, scores, strict=True)],
        "similar",
    )


@traced("resolve.search")
async def search(
    info: Info[TailorContext, Any],
    text: str,
    first: int = 10,
    personalized: bool = True,
    filter: ItemFilterInput | None = None,
) -> list[Recommendation]:
    services = info.context.services
    if not text.strip():
        raise BadUserInput("`text` must not be empty")
    if len(text) > 500:
        raise BadUserInput("`text` is longer than 500 characters")
    n = clamp_first(info, first)
    content = services.content
    if not content.ready:
        raise ServiceUnavailable("the item index is not built yet (run `tailor train index`)")
    sf = to_filter(filter).search_filter(services.catalog.all_items)
    user_vec = None
    # Only a personalized search reads the caller (which makes the answer PRIVATE); with
    # ``personalized: false`` the answer is the same for everyone.
    key = info.context.viewer.profile_key if personalized else None
    if key and personalization_allowed(services, key):
        state = await profile_state(info, key)
        if state is not None:
            user_vec = content.user_vector(state.recent_history(200))
    try:
        ids, scores = await asyncio.to_thread(
            content.search,
            text,
            n,
            sf,
            user_vector=user_vec,
            personal_weight=services.search_personal_weight,
        )
    except EmbeddingError as exc:
        raise ServiceUnavailable(f"search is unavailable: {exc}") from exc
    reason = f"Matches “{text.strip()[:60]}”" + (
        ", tuned to your taste" if user_vec is not None else ""
    )
    return await materialize(
        info,
        [Rec(i, float(s), "search", reason) for i, s in zip(ids, scores, strict=True)],
        "search",
    )


@traced("resolve.recommendations")
async def user_recommendations(
    info: Info[TailorContext, Any],
    profile_key: str,
    first: int = 10,
    strategy: Strategy | None = None,
    filter: ItemFilterInput | None = None,
    diversity: float = 0.0,
    max_per_category: int | None = None,
    context: RecommendationContext | None = None,
) -> list[Recommendation]:
    """One person's recommendations. The person's recommendation variants (experiments on the
    ``recommendations`` features) set the parameters they name -- strategy, blend weights,
    diversity, maxPerCategory, the number of items, filter fields -- over the arguments; the
    variants are recorded as exposures when served."""
    services = info.context.services
    person_data(info)  # one person's recommendations (or their consent's refusal): PRIVATE
    if not 0.0 <= diversity <= 1.0:
        raise BadUserInput("`diversity` must be between 0 and 1")
    if max_per_category is not None and max_per_category < 1:
        raise BadUserInput("`maxPerCategory` must be >= 1")
    if not personalization_allowed(services, profile_key):
        # No consent (or a Sec-GPC/DNT opt-out): the non-personalized path, and the answer says so.
        # No experiment either: the variants are personalization.
        req = RecommendRequest(
            k=clamp_first(info, first),
            strategy="trending",
            filter=to_filter(filter),
            diversity=diversity,
            max_per_category=max_per_category,
        )
        recs = await asyncio.to_thread(services.recommender.recommend, req)
        recs = [
            Rec(r.item_id, r.score, r.source, f"{r.reason} (personalization off)") for r in recs
        ]
        return await materialize(info, recs, "trending")
    assignment = person_assignment(info, profile_key)
    params = assignment.reco
    n = clamp_first(info, params.first or first)
    chosen = params.strategy or (strategy or Strategy.HYBRID).value
    state = await profile_state(info, profile_key)
    history = state.recent_history(200) if state is not None else []
    segment_id, segment_name = services.segment_and_name(profile_key)
    req = RecommendRequest(
        history=history,
        k=n,
        strategy=chosen,
        filter=with_variant(to_filter(filter), params),
        diversity=params.diversity if params.diversity is not None else diversity,
        max_per_category=params.max_per_category or max_per_category,
        context_item=id_arg(str(context.item_id), "context.itemId") if context else None,
        segment_id=segment_id,
        segment_name=segment_name,
        weights=params.weights,
    )
    recs = await asyncio.to_thread(services.recommender.recommend, req)
    if services.experiments is not None:
        services.experiments.expose(profile_key, assignment.reco_variants)
    return await materialize(info, recs, chosen, assignment.reco_variants)


def personalization_allowed(services: Services, profile_key: str) -> bool:
    """Consent check: a user's personalization flag, and the request's Sec-GPC/DNT opt-out."""
    return services.privacy.personalization_allowed(user_id_of(profile_key))


@traced("resolve.segment_recommendations")
async def segment_recommendations(
    info: Info[TailorContext, Any],
    segment_id: strawberry.ID | None = None,
    first: int = 10,
    filter: ItemFilterInput | None = None,
) -> list[Recommendation]:
    """What is popular now in a segment: one answer for everyone in it (cacheable per segment).

    Without ``segmentId`` the caller's own segment is used (empty when none applies). The
    caller's recommendation variants (from the gateway: credentials or the signed segment
    token, so the answer is keyed by segment and variant) set ``first`` and filter fields.
    """
    services = info.context.services
    variants = viewer_variants(info) if services.experiments is not None else {}
    params = services.experiments.reco_for(variants) if services.experiments else RecoParams()
    n = clamp_first(info, params.first or first)
    filt = with_variant(to_filter(filter), params)
    if segment_id is None:
        found = viewer_segment(info)
        sid = found[0] if isinstance(found, tuple) else found
    else:
        sid = id_arg(str(segment_id), "segmentId")
    if sid is None:
        return []
    add_cache_tags(info, f"segment:{sid}")
    name = services.segments.name_of(sid)
    recs = await asyncio.to_thread(services.recommender.for_segment, sid, n, filt, name)
    return await materialize(info, recs, "segment", variants)

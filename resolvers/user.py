"""The ``User`` type: a signed-in user or an anonymous visitor, and every field about them."""

from __future__ import annotations

from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers.cache_control import CacheControl, CacheControlScope, person_data, profile_state
from resolvers.context import TailorContext
from resolvers.experiments import ExperimentVariant, Flag
from resolvers.experiments import experiment as experiment_variant
from resolvers.experiments import flags as experiment_flags
from resolvers.inputs import ItemFilterInput, RecommendationContext, Strategy
from resolvers.recommendations import user_recommendations
from resolvers.segments import Segment, user_segment, user_segments
from resolvers.types import Profile, Recommendation, make_profile


@strawberry.type(
    description="A person: a signed-in user or an anonymous visitor.",
    directives=[CacheControl(max_age=60, scope=CacheControlScope.PRIVATE)],
)
class User:
    id: strawberry.ID
    anonymous: bool
    _profile_key: strawberry.Private[str]

    @strawberry.field(
        description="CRM traits (null for anonymous visitors). With a CRM upstream configured "
        "they come from it (the local record as fallback); when it fails with no cached answer, "
        "this field alone is null with extensions.code UPSTREAM_UNAVAILABLE."
    )
    async def traits(self, info: Info[TailorContext, Any]) -> JSON | None:
        person_data(info)
        if self.anonymous:
            return None
        found = await info.context.traits.load(str(self.id))
        return cast(JSON, found if found is not None else {})

    @strawberry.field(
        description="The user's behavioural cluster segment (null before segments are trained)."
    )
    def segment(self, info: Info[TailorContext, Any]) -> Segment | None:
        return user_segment(info, self._profile_key)

    @strawberry.field(
        description="Every segment the user is in: the cluster, then matching rule segments."
    )
    def segments(self, info: Info[TailorContext, Any]) -> list[Segment]:
        return user_segments(info, self._profile_key)

    @strawberry.field(description="Personalized recommendations with a reason and source for each.")
    async def recommendations(
        self,
        info: Info[TailorContext, Any],
        first: int = 10,
        strategy: Strategy | None = None,
        filter: ItemFilterInput | None = None,
        diversity: float = 0.0,
        max_per_category: int | None = None,
        context: RecommendationContext | None = None,
    ) -> list[Recommendation]:
        return await user_recommendations(
            info,
            self._profile_key,
            first,
            strategy,
            filter,
            diversity,
            max_per_category,
            context,
        )

    @strawberry.field(
        description="The feature flags the front-end reads, with this person's values "
        "(targeting, rollouts and experiments applied)."
    )
    def flags(self, info: Info[TailorContext, Any]) -> list[Flag]:
        return experiment_flags(info, self._profile_key)

    @strawberry.field(description="This person's variant of an experiment (null: not in it).")
    def experiment(self, info: Info[TailorContext, Any], key: str) -> ExperimentVariant:
        return experiment_variant(info, self._profile_key, key)

    @strawberry.field(
        description="Probability (0-1) that this user purchases within the conversion horizon "
        "(TAILOR_CONVERSION_HORIZON_DAYS, 7 by default); null without a trained model or a profile."
    )
    async def conversion_score(self, info: Info[TailorContext, Any]) -> float | None:
        services = info.context.services
        model = services.conversion  # one reference: a poller swap cannot split this read
        if model is None:
            return None
        state = await profile_state(info, self._profile_key)
        if state is None:
            return None
        return round(model.predict(state, services.clock()), 6)

    @strawberry.field(description="The behavioural profile; null when there are no events yet.")
    async def profile(self, info: Info[TailorContext, Any]) -> Profile | None:
        services = info.context.services
        state = await profile_state(info, self._profile_key)
        if state is None:
            return None
        return make_profile(state, services.clock(), services.profile_config)

"""GraphQL for segments: Segment type, Query.segments / segment(id), User.segment / segments."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from resolvers.cache_control import person_data
from resolvers.context import TailorContext


@strawberry.enum
class SegmentKind(Enum):
    CLUSTER = "cluster"
    RULE = "rule"


@strawberry.type(description="A standout trait of a cluster's centroid.")
class SegmentTrait:
    name: str
    value: float = strawberry.field(description="The centroid's value (raw feature units).")
    z_score: float = strawberry.field(
        description="How far it stands from the population, in std units."
    )


@strawberry.type(description="A micro-segment: a behavioural cluster or a marketer's rule.")
class Segment:
    id: strawberry.ID
    name: str
    description: str
    kind: SegmentKind
    size: int = strawberry.field(description="Profiles currently in the segment.")
    traits: list[SegmentTrait]


def to_graphql(seg: Any) -> Segment:
    return Segment(
        id=strawberry.ID(seg.id),
        name=seg.name,
        description=seg.description,
        kind=SegmentKind(seg.kind.value),
        size=int(seg.size),
        traits=[
            SegmentTrait(
                name=t.name, value=round(float(t.value), 6), z_score=round(float(t.z_score), 4)
            )
            for t in seg.traits
        ],
    )


def all_segments(info: Info[TailorContext, Any]) -> list[Segment]:
    return [to_graphql(s) for s in info.context.services.segments.all_segments()]


def segment(info: Info[TailorContext, Any], id: strawberry.ID) -> Segment | None:
    seg = info.context.services.segments.segment(str(id))
    return to_graphql(seg) if seg is not None else None


def user_segment(info: Info[TailorContext, Any], profile_key: str) -> Segment | None:
    person_data(info)  # which segment one person is in: PRIVATE
    services = info.context.services
    seg_id = services.segment_of(profile_key)
    seg = services.segments.segment(seg_id) if seg_id else None
    return to_graphql(seg) if seg is not None else None


def user_segments(info: Info[TailorContext, Any], profile_key: str) -> list[Segment]:
    person_data(info)
    services = info.context.services
    rules = services.segments.rules_of(profile_key)
    ids = [i for i in (services.segment_of(profile_key), *rules) if i]
    found = [services.segments.segment(i) for i in ids]
    return [to_graphql(s) for s in found if s is not None]

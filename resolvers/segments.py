"""GraphQL for segments: Segment type, Query.segments / segment(id), User.segment / segments."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

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
    service = info.context.services.segments
    return [] if service is None else [to_graphql(s) for s in service.all_segments()]


def segment(info: Info[TailorContext, Any], id: strawberry.ID) -> Segment | None:
    service = info.context.services.segments
    seg = None if service is None else service.segment(str(id))
    return to_graphql(seg) if seg is not None else None


def user_segment(info: Info[TailorContext, Any], profile_key: str) -> Segment | None:
    service = info.context.services.segments
    if service is None:
        return None
    seg_id = service.segment_of(profile_key)
    seg = service.segment(seg_id) if seg_id else None
    return to_graphql(seg) if seg is not None else None


def user_segments(info: Info[TailorContext, Any], profile_key: str) -> list[Segment]:
    service = info.context.services.segments
    if service is None:
        return []
    ids = [i for i in (service.segment_of(profile_key), *service.rules_of(profile_key)) if i]
    found = [service.segment(i) for i in ids]
    return [to_graphql(s) for s in found if s is not None]

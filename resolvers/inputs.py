"""GraphQL input types and enums of the recommendation fields."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.scalars import JSON


@strawberry.enum(description="Which candidate sources answer.")
class Strategy(Enum):
    HYBRID = "hybrid"
    CF = "cf"
    CONTENT = "content"
    SEGMENT = "segment"
    TRENDING = "trending"


@strawberry.input(
    description="Business filters; results still number `first` whenever enough items qualify."
)
class ItemFilterInput:
    exclude_ids: list[strawberry.ID] | None = None
    categories: list[str] | None = strawberry.field(
        default=None, description="Only these categories."
    )
    exclude_categories: list[str] | None = None
    price_min: float | None = None
    price_max: float | None = None
    available_only: bool = True
    attributes: JSON | None = strawberry.field(
        default=None, description='Equality, e.g. {"color": "red"}.'
    )


@strawberry.input(description="What the user is looking at right now.")
class RecommendationContext:
    item_id: strawberry.ID

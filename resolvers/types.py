"""GraphQL object types (strawberry). Domain records stay plain; these wrap them for the schema."""

from __future__ import annotations

from enum import Enum
from typing import cast

import strawberry
from strawberry.scalars import JSON

from profiles.state import ProfileState
from profiles.types import ProfileConfig
from resolvers.cache_control import CacheControl, CacheControlScope
from storage.timeutil import iso
from storage.types import ItemRecord

# Closed value sets are GraphQL enums (codegen gets exact types). Their values are written in
# lower case, as the strings were: variables such as {"type": "view"} keep working unchanged.
# tests/gateway/test_schema_file.py keeps them equal to the domain's own lists.


@strawberry.enum(description="What happened (profiles.types.BUILTIN_EVENT_TYPES).")
class EventType(Enum):
    view = "view"
    click = "click"
    add_to_cart = "add_to_cart"
    remove_from_cart = "remove_from_cart"
    purchase = "purchase"
    search = "search"
    rate = "rate"
    identify = "identify"
    custom = strawberry.enum_value(
        "custom", description="A type of `custom_event_types`, named in `customType`."
    )


@strawberry.enum(description="Where an event happened (profiles.types.CHANNELS).")
class Channel(Enum):
    web = "web"
    mobile = "mobile"
    email = "email"
    offline = "offline"
    api = "api"


@strawberry.enum(description="The candidate source that contributed most to a recommendation.")
class RecommendationSource(Enum):
    cf = strawberry.enum_value("cf", description="Collaborative filtering (co-engagement).")
    content = strawberry.enum_value("content", description="Similar content to the history.")
    segment = strawberry.enum_value("segment", description="Popular in the viewer's segment.")
    trending = strawberry.enum_value("trending", description="Trending now.")
    context = strawberry.enum_value("context", description="Similar to the item being viewed.")
    catalog = strawberry.enum_value("catalog", description="Newest items: the never-empty fill.")
    search = strawberry.enum_value("search", description="A semantic search hit.")


@strawberry.type(
    description="A catalog item.",
    directives=[
        CacheControl(
            max_age=300,
            scope=CacheControlScope.PUBLIC,
            stale_while_revalidate=60,
            stale_if_error=3600,
        )
    ],
)
class Item:
    id: strawberry.ID
    title: str
    description: str
    categories: list[str]
    tags: list[str]
    price: float | None
    currency: str
    available: bool
    attributes: JSON
    created_at: str | None
    updated_at: str | None

    @classmethod
    def from_record(cls, r: ItemRecord) -> Item:
        return cls(
            id=strawberry.ID(r.id),
            title=r.title,
            description=r.description,
            categories=list(r.categories),
            tags=list(r.tags),
            price=r.price,
            currency=r.currency,
            available=r.available,
            attributes=cast(JSON, dict(r.attributes)),
            created_at=iso(r.created_at),
            updated_at=iso(r.updated_at),
        )


@strawberry.type(
    description="A ranked item with why it was chosen.",
    directives=[CacheControl(inherit_max_age=True)],
)
class Recommendation:
    item: Item
    score: float
    reason: str = strawberry.field(
        description='Human-readable explanation, e.g. "Trending in Shoes".'
    )
    source: RecommendationSource = strawberry.field(
        description="The candidate source that contributed most (its reason says why)."
    )
    recommendation_id: str | None = strawberry.field(
        default=None,
        description="Identifies the result list this item was served in (its strategy, variants "
        "and sources): send it as `properties.recommendationId` with click/add_to_cart/purchase "
        "events to attribute them. Null only where the gateway runs without an experiment service.",
    )
    variant: str | None = strawberry.field(
        default=None,
        description="The experiment variants that shaped this result (`experiment=variant;…`); "
        "null when none did.",
    )


@strawberry.type(
    description="A named numeric profile feature.", directives=[CacheControl(inherit_max_age=True)]
)
class Feature:
    name: str
    value: float


@strawberry.type(directives=[CacheControl(inherit_max_age=True)])
class CategoryAffinity:
    category: str
    score: float = strawberry.field(description="Time-decayed engagement with the category.")


@strawberry.type(
    description="Behavioural profile built in real time from the user's events.",
    # Time-windowed features (recency, 7-day counts) age by themselves: a short max age;
    # the user's events purge it at once.
    directives=[CacheControl(max_age=30, scope=CacheControlScope.PRIVATE)],
)
class Profile:
    _state: strawberry.Private[ProfileState]
    _features: strawberry.Private[dict[str, float]]
    _now: strawberry.Private[float]
    _config: strawberry.Private[ProfileConfig]

    @strawberry.field(description="Number of events in the profile.")
    def events(self) -> int:
        return int(self._features["events"])

    @strawberry.field
    def first_seen(self) -> str | None:
        return iso(self._state.first_ts)

    @strawberry.field
    def last_seen(self) -> str | None:
        return iso(self._state.last_ts)

    @strawberry.field
    def last_purchase(self) -> str | None:
        return iso(self._state.last_purchase_ts)

    @strawberry.field(
        description="Weighted engagement points (view 0.5, click 1, add_to_cart 3, purchase 5 by default)."
    )
    def engagement_score(self) -> float:
        return self._features["engagement_score"]

    @strawberry.field(description="Days since the last event (RFM recency).")
    def recency_days(self) -> float:
        return self._features["recency_days"]

    @strawberry.field(description="Number of orders (RFM frequency).")
    def frequency(self) -> int:
        return int(self._features["frequency"])

    @strawberry.field(description="Total spend (RFM monetary).")
    def monetary(self) -> float:
        return self._features["monetary"]

    @strawberry.field
    def sessions(self) -> int:
        return int(self._features["sessions"])

    @strawberry.field
    def views_7d(self) -> int:
        return int(self._features["views_7d"])

    @strawberry.field
    def views_30d(self) -> int:
        return int(self._features["views_30d"])

    @strawberry.field
    def purchases_30d(self) -> int:
        return int(self._features["purchases_30d"])

    @strawberry.field
    def conversion_rate(self) -> float:
        return self._features["conversion_rate"]

    @strawberry.field
    def add_to_cart_rate(self) -> float:
        return self._features["add_to_cart_rate"]

    @strawberry.field
    def last_channel(self) -> Channel | None:
        return Channel(self._state.last_channel[1]) if self._state.last_channel else None

    @strawberry.field(description="Categories by time-decayed affinity, strongest first.")
    def top_categories(self, first: int = 5) -> list[CategoryAffinity]:
        ranked = self._state.affinities(self._now, self._config)[: max(0, min(first, 50))]
        return [CategoryAffinity(category=c, score=round(s, 6)) for c, s in ranked]

    @strawberry.field(description="Every numeric feature by name (windows, rates, RFM, ...).")
    def features(self) -> list[Feature]:
        return [Feature(name=k, value=v) for k, v in sorted(self._features.items())]


def make_profile(state: ProfileState, now: float, config: ProfileConfig) -> Profile:
    return Profile(_state=state, _features=state.features(now, config), _now=now, _config=config)

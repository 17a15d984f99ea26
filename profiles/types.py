"""Contracts of the profiles package: event vocabulary, per-event outcomes, profile config, errors.

Error hierarchy (mapped to HTTP/GraphQL in ``gateway/errors.py``)::

    ProfileError
    ├── BatchTooLarge        (413: more events than ``max_batch_events``)
    ├── IngestUnavailable    (503: the durable write failed; nothing of the batch was acknowledged)
    ├── ConversionModelNotFound    no (complete) conversion model at a path or version
    └── InsufficientTrainingData   (also a ValueError) the log cannot give both classes in
                                   training and holdout rows
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

BUILTIN_EVENT_TYPES = (
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "search",
    "rate",
    "identify",
)
ITEM_EVENT_TYPES = frozenset(
    {"view", "click", "add_to_cart", "remove_from_cart", "purchase", "rate"}
)
CHANNELS = ("web", "mobile", "email", "offline", "api")

FLAG_CLAMPED = 1  # the event's timestamp was in the future beyond the skew tolerance

# Server-generated message ids (the identify mutation's ``_identify:<anonymousId>:<userId>``)
# start with "_": a client's messageId must start with a letter or digit (storage.fields.ident),
# so no client event can occupy, and so block, an internal id.
INTERNAL_MESSAGE_PREFIX = "_"

MAX_PROPERTIES_BYTES = 8192  # an event's properties, encoded
MAX_TRAITS_BYTES = 8192  # the traits one identify carries (event or mutation), encoded
MAX_USER_TRAITS_BYTES = 16_000  # a user's merged traits: the cap of a CRM import row

# The per-event answer when an identify would move a link (storage: the "refused" outcome).
IDENTITY_TAKEN = "this anonymous id is already linked to another user"

Status = Literal["accepted", "duplicate", "conflict", "rejected", "dropped"]


class HistoryEvent(NamedTuple):
    """One interaction in a profile's recent history (``ProfileState.history``, oldest first)."""

    ts: float  # UTC epoch seconds
    message_id: str
    item_id: str
    type: str  # event type
    weight: float  # the event type's weight (ProfileConfig.weights)


class ProfileError(Exception):
    pass


class BatchTooLarge(ProfileError):
    pass


class IngestUnavailable(ProfileError):
    pass


class ConversionModelNotFound(ProfileError):
    """No (complete) conversion model at the given path or version."""


class InsufficientTrainingData(ProfileError, ValueError):
    """The event log cannot give a training and a holdout set with both classes."""


class EventResult(NamedTuple):
    """The answer for one event of a batch. ``field``/``reason`` are set for rejected/conflict.

    A named tuple rather than a frozen dataclass: one is built for every ingested event, and
    a tuple is several times cheaper to build (immutable all the same)."""

    index: int  # type: ignore[assignment]  # the event's position; shadows tuple.index
    status: Status
    message_id: str | None = None
    field: str | None = None
    reason: str | None = None
    clamped: bool = False

    def as_json(self) -> dict[str, object]:
        index, status, message_id, field, reason, clamped = self
        if message_id is not None and field is None and reason is None and not clamped:
            # The common answer ("accepted", "duplicate"): built at once, same keys and order.
            return {"index": index, "status": status, "messageId": message_id}
        out: dict[str, object] = {"index": self.index, "status": self.status}
        if self.message_id is not None:
            out["messageId"] = self.message_id
        if self.field is not None:
            out["field"] = self.field
        if self.reason is not None:
            out["reason"] = self.reason
        if self.clamped:
            out["clamped"] = True
        return out


@dataclass(frozen=True, slots=True)
class BatchResult:
    results: list[EventResult]

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    def as_json(self) -> dict[str, object]:
        counts = {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0, "dropped": 0}
        answers: list[dict[str, object]] = []
        answer = answers.append
        for r in self.results:
            counts[r.status] += 1
            answer(r.as_json())
        return {
            "accepted": counts["accepted"],
            "duplicates": counts["duplicate"],
            "conflicts": counts["conflict"],
            "rejected": counts["rejected"],
            "dropped": counts["dropped"],
            "results": answers,
        }


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What the ingestion service needs from settings (the domain never reads settings itself)."""

    custom_event_types: tuple[str, ...] = ()
    clock_skew_s: float = 300.0
    max_batch_events: int = 1000
    group_commit_ms: float = 2.0


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """Feature parameters. ``weights`` are engagement points per event type (rate: per 5 stars)."""

    weights: Mapping[str, float] = field(
        default_factory=lambda: {
            "view": 0.5,
            "click": 1.0,
            "add_to_cart": 3.0,
            "remove_from_cart": -1.0,
            "purchase": 5.0,
            "rate": 1.0,
        }
    )
    affinity_half_life_days: float = 14.0
    history_size: int = 200

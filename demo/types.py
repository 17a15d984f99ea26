"""Contracts of the demo world generator: personas, the summary, internal records, errors.

Exception hierarchy (one class, because the only failure mode is bad input):

    ValueError
     └── InvalidWorldParameters   -- sizes/window/end rejected by `generate_world`

The generator is pure Python + numpy and imports nothing else from Tailor, so the records
below are its own; the gateway reads the *files* it writes, never these classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path


class Persona(StrEnum):
    """Planted behavioural persona of a demo user (ground truth in ``personas.json``)."""

    HIGH_VALUE_LOYALIST = "high_value_loyalist"
    BROWSING_ENTHUSIAST = "browsing_enthusiast"
    OCCASIONAL_BUYER = "occasional_buyer"
    NEW_VISITOR = "new_visitor"


class InvalidWorldParameters(ValueError):
    """`generate_world` was asked for a world it cannot build (e.g. zero users, naive sizes)."""


@dataclass(frozen=True, slots=True)
class WorldSummary:
    """What `generate_world` wrote.

    Counts are exact (read back from what was written). ``start``/``end`` bound the event
    window as ``start <= timestamp < end`` (UTC, whole seconds).
    """

    out_dir: Path
    items_path: Path
    users_path: Path
    events_path: Path
    personas_path: Path
    seed: int
    start: datetime
    end: datetime
    n_items: int
    n_users: int
    n_sessions: int
    n_events: int
    event_counts: Mapping[str, int]
    persona_counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class DemoItem:
    """One catalog item plus the hidden generation facts the event simulator needs.

    ``price_ratio`` is price / category median (dimensionless, ~1.0 for a mid-priced item);
    ``popularity`` is an unnormalised Zipf weight; ``created_s`` is seconds since the epoch.
    """

    index: int
    id: str
    category: int
    gender: str
    style: str
    price: float
    price_ratio: float
    popularity: float
    available: bool
    trending: bool
    created_s: int
    record: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class DemoUser:
    """One registered user plus the hidden taste the event simulator follows.

    ``price_band`` is the centre of preferred log(price_ratio) (e.g. -0.35 cheap, +0.35 dear);
    ``arrival_s`` (seconds since the epoch) is when a new visitor's first session starts, and
    ``None`` for users who were already customers before the event window.
    """

    index: int
    id: str
    persona: Persona
    gender: str
    categories: tuple[int, ...]
    styles: tuple[str, ...]
    price_band: float
    mobile_share: float
    newsletter: bool
    country: str
    arrival_s: int | None
    record: dict[str, object]


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """Static description of one shop category.

    ``median_price`` is in EUR and ``price_sigma`` the log-normal sigma of prices around it;
    ``genders`` maps "women"/"men"/"unisex" to the share of items; ``nouns`` are product
    nouns (sub-types) used in titles; ``seasons`` are the seasons items of this category carry.
    """

    name: str
    weight: float
    median_price: float
    price_sigma: float
    genders: Mapping[str, float]
    styles: tuple[str, ...]
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    adjectives: tuple[str, ...]
    seasons: tuple[str, ...]


# One simulated event before serialisation: (timestamp epoch s, generation sequence, type,
# userId, anonymousId, item index or -1, sessionId, channel, properties).
Row = tuple[int, int, str, str | None, str | None, int, str, str, dict[str, object] | None]


@dataclass(slots=True)
class SimulationResult:
    """Simulated rows sorted by (timestamp, sequence); ``first_seen_s`` maps a user's index
    to the start (epoch s) of their first session."""

    rows: list[Row]
    n_sessions: int
    first_seen_s: dict[int, int] = field(default_factory=dict)

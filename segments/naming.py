"""Human names for clusters, from each centroid's standout traits.

Traits are z-scores of the members' mean *log-space* feature against the population
(population standard deviations), so "3x the median spend" and "+2 sessions" are comparable.
A small persona vocabulary recognises the patterns marketers already have words for; any other
cluster gets a generic name built from its top traits. Names are unique within a model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from segments.features import FloatArray
from segments.types import SegmentTrait

# feature -> (phrase when above the population, phrase when below)
TRAIT_PHRASES: dict[str, tuple[str, str]] = {
    "recency_days": ("long since last visit", "recent visits"),
    "frequency": ("frequent purchases", "rare purchases"),
    "monetary": ("high total spend", "low total spend"),
    "avg_order_value": ("high order value", "low order value"),
    "sessions": ("many sessions", "few sessions"),
    "views_7d": ("many views this week", "few views this week"),
    "views_30d": ("many views", "few views"),
    "clicks_7d": ("many clicks this week", "few clicks this week"),
    "clicks_30d": ("many clicks", "few clicks"),
    "add_to_cart_7d": ("many add-to-carts this week", "few add-to-carts this week"),
    "add_to_cart_30d": ("many add-to-carts", "few add-to-carts"),
    "purchases_7d": ("purchases this week", "no purchases this week"),
    "purchases_30d": ("many recent purchases", "few recent purchases"),
    "views_per_session": ("deep sessions", "shallow sessions"),
    "avg_session_duration_s": ("long sessions", "short sessions"),
    "add_to_cart_rate": ("high add-to-cart rate", "low add-to-cart rate"),
    "conversion_rate": ("high conversion", "low conversion"),
    "engagement_score": ("highly engaged", "low engagement"),
    "category_diversity": ("broad category interest", "narrow category interest"),
    "days_since_last_purchase": ("long since last purchase", "recent purchase"),
}

# |z| below this is "like everyone else" and never makes it into a name or description.
STANDOUT_Z = 0.5


def cluster_traits(
    features: Sequence[str],
    log_means: FloatArray,
    raw_means: FloatArray,
    pop_mean: FloatArray,
    pop_std: FloatArray,
) -> list[list[SegmentTrait]]:
    """Per cluster, its traits sorted by |z|. `log_means`/`raw_means` are (k, d) member means in
    log space / raw units; `pop_mean`/`pop_std` (d,) the population's log-space mean and std."""
    std = np.where(pop_std > 1e-12, pop_std, 1.0)
    z = (log_means - pop_mean) / std
    out: list[list[SegmentTrait]] = []
    for row_z, row_raw in zip(z, raw_means, strict=True):
        traits = [
            SegmentTrait(name, round(float(v), 4), round(float(zz), 4))
            for name, v, zz in zip(features, row_raw, row_z, strict=True)
        ]
        traits.sort(key=lambda t: (-abs(t.z_score), t.name))
        out.append(traits)
    return out


def phrase(trait: SegmentTrait) -> str:
    """The words for one trait, e.g. "frequent purchases"; counts that are ~0 read "no ..."."""
    high, low = TRAIT_PHRASES.get(trait.name, (f"high {trait.name}", f"low {trait.name}"))
    if trait.name in ("frequency", "purchases_30d", "monetary") and trait.value < 0.05:
        return "no purchases"
    # Above a population where most never buy, two orders is "more than average", not "frequent".
    if trait.name in ("frequency", "purchases_30d") and trait.z_score > 0 and trait.value < 4:
        return "some purchases"
    return high if trait.z_score > 0 else low


@dataclass(frozen=True)
class _View:
    """z-scores and raw means of one cluster, missing features read as 0."""

    z: Mapping[str, float]
    value: Mapping[str, float]

    def zs(self, *names: str) -> float:
        return float(np.mean([self.z.get(n, 0.0) for n in names]))


@dataclass(frozen=True)
class Persona:
    """A recognisable pattern: `score` returns None when the cluster does not fit, else how
    well it fits (higher wins when two clusters compete for one name); `signature` lists the
    features the description leads with."""

    name: str
    score: Callable[[_View], float | None]
    signature: tuple[str, ...]


def _loyalist(v: _View) -> float | None:
    fit = min(v.z.get("frequency", 0.0), v.z.get("monetary", 0.0))
    return fit if fit > STANDOUT_Z else None


def _browser(v: _View) -> float | None:
    activity = v.zs("views_30d", "sessions", "avg_session_duration_s")
    converts = max(v.z.get("conversion_rate", 0.0), v.z.get("frequency", 0.0))
    return activity - max(converts, 0.0) if activity > STANDOUT_Z and converts < 0.3 else None


def _new_visitor(v: _View) -> float | None:
    quiet = -v.zs("sessions", "views_30d")
    recent = v.z.get("recency_days", 0.0) < 0.3
    never_bought = v.value.get("frequency", 0.0) < 0.25
    return quiet if quiet > STANDOUT_Z and recent and never_bought else None


def _occasional(v: _View) -> float | None:
    buys = v.value.get("frequency", 0.0) >= 0.5
    few_sessions = v.z.get("sessions", 0.0) < 0.0
    not_whale = v.z.get("frequency", 0.0) < 1.5
    return 1.0 - v.z.get("sessions", 0.0) if buys and few_sessions and not_whale else None


PERSONA_VOCABULARY: tuple[Persona, ...] = (
    Persona("High-value loyalists", _loyalist, ("frequency", "avg_order_value", "recency_days")),
    Persona("Browsing enthusiasts", _browser, ("views_30d", "avg_session_duration_s", "frequency")),
    Persona("New visitors", _new_visitor, ("sessions", "recency_days", "frequency")),
    Persona("Occasional buyers", _occasional, ("sessions", "frequency", "recency_days")),
)


def _describe(traits: Sequence[SegmentTrait], lead: Sequence[str], limit: int = 4) -> str:
    by_name = {t.name: t for t in traits}
    # Signature traits lead even when moderate, but not when the cluster is simply average there.
    picked = [by_name[n] for n in lead if n in by_name and abs(by_name[n].z_score) >= 0.2]
    picked += [t for t in traits if abs(t.z_score) >= STANDOUT_Z and t not in picked]
    phrases: list[str] = []
    for t in picked:
        words = phrase(t)
        if words not in phrases:
            phrases.append(words)
        if len(phrases) == limit:
            break
    text = ", ".join(phrases) or "close to the population average"
    return text[0].upper() + text[1:] + "."


def _generic_name(traits: Sequence[SegmentTrait]) -> str:
    standout = [phrase(t) for t in traits if abs(t.z_score) >= STANDOUT_Z]
    words = list(dict.fromkeys(standout))[:2] or ["Average users"]
    text = ", ".join(words)
    return text[0].upper() + text[1:]


def name_segments(
    traits: Sequence[Sequence[SegmentTrait]], reserved: Collection[str] = ()
) -> list[tuple[str, str]]:
    """`(name, description)` per cluster. Each persona name goes to at most one cluster — the one
    it fits best; the rest get generic names from their top traits, made unique with a suffix.
    `reserved` names (kept by clusters matched in a retrain) are not handed out again."""
    views = [_View({t.name: t.z_score for t in ts}, {t.name: t.value for t in ts}) for ts in traits]
    candidates: list[tuple[float, int, int]] = []
    for i, view in enumerate(views):
        for p, persona in enumerate(PERSONA_VOCABULARY):
            score = persona.score(view)
            if score is not None:
                candidates.append((score, i, p))
    chosen: dict[int, Persona] = {}
    taken = {p for p, persona in enumerate(PERSONA_VOCABULARY) if persona.name in reserved}
    # Greedy by fit: the strongest (cluster, persona) pairs first, ties by index (deterministic).
    for _, i, p in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if i not in chosen and p not in taken:
            chosen[i] = PERSONA_VOCABULARY[p]
            taken.add(p)
    out: list[tuple[str, str]] = []
    used = set(reserved)
    for i, ts in enumerate(traits):
        match = chosen.get(i)
        if match is not None:
            name, lead = match.name, match.signature
        else:
            name, lead = _generic_name(ts), ()
        unique, n = name, 2
        while unique in used:
            unique, n = f"{name} ({n})", n + 1
        used.add(unique)
        out.append((unique, _describe(ts, lead)))
    return out

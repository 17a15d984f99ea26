"""``tailor train ranker``: a LambdaRank model learned from a time split of the store's events.

The log is cut at the time before which ``1 - label_fraction`` of its interactions happened.
Everything the engine would have known at that moment is rebuilt from the events before the
cut: the CF model (the serving model's kind and tuned parameters, refitted), trending and
segment popularity decayed to the cut, and each user's history (as their profile held it). The
engine's own :meth:`~recommend.engine.Recommender.candidate_lists` then proposes each user's
candidates and :func:`~recommend.ranker_features.candidate_features` describes them — the very
code serving runs — and what the user did after the cut is the label (a purchase 3, an
add-to-cart 2, any other positive interaction 1, nothing 0). The item index is the serving one
(item vectors do not depend on time); segments are the live assignment.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiles.state import ProfileState
from profiles.types import HistoryEvent, ProfileConfig
from recommend.content import ContentService
from recommend.engine import ModelSlot, Recommender, RecommendRequest
from recommend.model import ItemModel
from recommend.ranker import Group, Ranker, RankerParams
from recommend.ranker_features import ItemStats, candidate_features
from recommend.ranker_fit import fit_lambdarank
from recommend.segment_popular import SegmentPopularity
from recommend.training import history_factors, interaction_matrix
from recommend.trending import TrendingModel
from recommend.types import RecommendError
from storage.types import EventRecord, ItemRecord

log = logging.getLogger("tailor.recommend.ranker_training")

_GRADES = {"purchase": 3.0, "add_to_cart": 2.0}


@dataclass(frozen=True)
class RankerTraining:
    """What the ranker learns from: the share of the log after the cut (labels), the
    candidates each source proposes, the most users (groups) used, and LightGBM's settings."""

    label_fraction: float = 0.2
    candidates: int = 30
    max_users: int = 5000
    history_size: int = 200
    params: RankerParams = field(default_factory=RankerParams)


@dataclass(frozen=True)
class ServingParts:
    """The serving pieces the training rebuilds at the cut or reuses (see the module doc)."""

    cf: ItemModel
    rating_curve: str
    content: ContentService
    trending: TrendingModel
    item_of: Callable[[str], ItemRecord | None]
    all_items: Callable[[], Iterable[ItemRecord]]
    weights: Mapping[str, float]
    exclude_types: Sequence[str] = ("purchase",)
    segment_of: Callable[[str], str | None] | None = None
    #: The serving CF version's tuned event-type weights (``event_weights`` of its training
    #: summary), None when they are the configured ones.
    event_weights: Mapping[str, float] | None = None


def cutoff(events: Sequence[EventRecord], label_fraction: float) -> float:
    """The time before which ``1 - label_fraction`` of the interactions happened."""
    stamps = np.sort(np.fromiter((ev.ts for ev in events), dtype=np.float64))
    if stamps.size < 2 or stamps[0] == stamps[-1]:
        raise RecommendError("too few interactions over time to learn a ranker")
    return float(stamps[min(int(stamps.size * (1.0 - label_fraction)), stamps.size - 1)])


def label(ev: EventRecord, config: ProfileConfig) -> float:
    """The graded relevance of one event after the cut."""
    if ProfileState.event_weight(ev, config) <= 0:
        return 0.0
    if ev.type == "rate":
        return 1.0 if float(ev.properties.get("value") or 0.0) >= 3.0 else 0.0
    return _GRADES.get(ev.type, 1.0)


def histories(
    events: Iterable[EventRecord], config: ProfileConfig, size: int
) -> dict[str, list[HistoryEvent]]:
    """Every profile's history as its state keeps it (positive events, newest ``size``)."""
    out: dict[str, list[HistoryEvent]] = {}
    for ev in events:
        assert ev.item_id is not None
        weight = ProfileState.event_weight(ev, config)
        if weight > 0:
            out.setdefault(ev.profile_key, []).append(
                HistoryEvent(ev.ts, ev.message_id, ev.item_id, ev.type, weight)
            )
    return {key: sorted(h)[-size:] for key, h in out.items()}


def train_ranker(
    events: Iterable[EventRecord],
    parts: ServingParts,
    config: ProfileConfig,
    training: RankerTraining = RankerTraining(),
    *,
    seed: int = 0,
) -> Ranker:
    """Learn a ranker from a time split of ``events`` (see the module docstring). The summary
    (``Ranker.info``) holds the cut, the groups and the validation NDCG@10 of the ranker, of
    the blend and of every single source on the same held-out users."""
    started = time.perf_counter()
    log_events = [ev for ev in events if ev.item_id and ev.type != "identify"]
    log_events.sort(key=lambda ev: ev.ts)
    cut = cutoff(log_events, training.label_fraction)
    before = [ev for ev in log_events if ev.ts < cut]
    after = [ev for ev in log_events if ev.ts >= cut]
    if not before or not after:
        raise RecommendError("too few interactions before and after the cut to learn a ranker")

    engine = _engine_at(cut, before, parts, config)
    known = histories(before, config, training.history_size)
    labels: dict[str, dict[str, float]] = {}
    for ev in after:
        assert ev.item_id is not None
        grade = label(ev, config)
        if grade > 0 and ev.profile_key in known:
            mine = labels.setdefault(ev.profile_key, {})
            mine[ev.item_id] = max(mine.get(ev.item_id, 0.0), grade)
    users = sorted(labels)
    if len(users) > training.max_users:
        rng = np.random.default_rng(seed)
        users = sorted(rng.choice(users, training.max_users, replace=False).tolist())
    stats = ItemStats.from_matrix(interaction_matrix(before, config))
    groups: list[Group] = []
    for key in users:
        segment = parts.segment_of(key) if parts.segment_of is not None else None
        req = RecommendRequest(history=tuple(known[key]), k=training.candidates, segment_id=segment)
        lists, _filt = engine.candidate_lists(req, training.candidates)
        ids, X = candidate_features(
            lists, engine.profile_view(req), engine.facts, stats, cut, parts.weights
        )
        if ids:
            y = np.fromiter((labels[key].get(i, 0.0) for i in ids), dtype=np.float64)
            groups.append(Group(X, y, key))
    params = training.params
    trees, info = fit_lambdarank(groups, params)
    everything = interaction_matrix(log_events, config)
    summary: dict[str, Any] = {
        "cutoff": cut,
        "label_fraction": training.label_fraction,
        "users_with_labels": len(labels),
        "events_before": len(before),
        "events_after": len(after),
        "cf": {"kind": parts.cf.kind, "rating_curve": parts.rating_curve},
        **info,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Ranker(
        trees,
        ItemStats.from_matrix(everything),
        dict(parts.weights),
        training.candidates,
        params.prior,
        summary,
    )


def _engine_at(
    cut: float, before: list[EventRecord], parts: ServingParts, config: ProfileConfig
) -> Recommender:
    """The engine as it stood at ``cut``: sources rebuilt from the events before it."""

    def clock() -> float:
        return cut

    cf = type(parts.cf)(**parts.cf._params())
    factors = None
    cf_config = config
    if parts.event_weights:  # as served: trained and folded in with the tuned type weights
        factors = history_factors({"event_weights": parts.event_weights}, config.weights)
        cf_config = dataclasses.replace(config, weights={**config.weights, **parts.event_weights})
    cf.fit(interaction_matrix(before, cf_config, rating=parts.rating_curve))
    slot = ModelSlot()
    slot.swap(cf, "ranker-training", None, factors)
    categories = _categories_of(parts.item_of)
    trending = TrendingModel(
        half_life_s=parts.trending.half_life_s,
        weights=parts.trending.weights,
        categories=categories,
        clock=clock,
        cache_s=float("inf"),
    )
    trending.add_events(before)
    segment_popular = None
    if parts.segment_of is not None:
        segment_of = parts.segment_of
        popular = SegmentPopularity(
            segment_of,
            events_since=lambda ts: (ev for ev in before if ev.ts >= ts),
            newest_event_ts=clock,
            clock=clock,
            categories=categories,
        )
        keys = {ev.profile_key for ev in before}
        popular.rebuild({k: s for k in keys if (s := segment_of(k)) is not None})
        segment_popular = popular.popular
    return Recommender(
        content=parts.content,
        trending=trending,
        cf=slot,
        item_of=parts.item_of,
        all_items=parts.all_items,
        weights=parts.weights,
        exclude_types=parts.exclude_types,
        segment_popular=segment_popular,
        clock=clock,
    )


def _categories_of(item_of: Callable[[str], ItemRecord | None]) -> Callable[[str], tuple[str, ...]]:
    def categories(item_id: str) -> tuple[str, ...]:
        item = item_of(item_id)
        return item.categories if item else ()

    return categories

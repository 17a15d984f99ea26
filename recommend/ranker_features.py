"""The features the learned ranker sees for each candidate: one definition for serving and training.

Serving (:meth:`recommend.engine.Recommender.recommend`), ranker training on the store's events
(:mod:`recommend.ranker_training`) and the offline evaluation (:mod:`recommend.offline.ranking`)
all call :func:`candidate_features` with the same inputs, so a model never sees a feature computed
one way in training and another way when serving:

* ``lists``: each candidate source's ``(ids, scores)``, best first (the engine's sources);
* ``profile``: the user's recent positive history (:class:`ProfileView`), from a profile's
  ``HistoryEvent`` s or from a row of an interaction matrix;
* ``catalog``: categories, price and content vector of an item (:class:`ItemFacts`);
* ``stats``: per-item popularity and timing learned with the model (:class:`ItemStats`);
* ``now``: the time of the request (the cutoff, in training).

Features of one candidate (:data:`FEATURES`): for every source its reciprocal rank, its
rank-normalized score (as the blend computes it) and its score relative to the list's best; the
CF model's score of the item from the user's last item and from their last five alone (what they
are after now); the blended score under the weights the model was trained with and the number of
sources that propose the item; the item's popularity (percentile of distinct users), its age and
idle time and how far its typical interaction time lies from the user's; the share of the user's
history in the item's categories and the distance of its price from the prices the user
interacts with (over their 50 most recent items); its content similarity to the user's most
recent items (cosine with their mean item vector); and the profile's own features: history
length and recency (as percentiles of the users the model learned from), purchase frequency and
monetary value (RFM), how mainstream its history is, and whether a segment applies. Missing
values are sentinels (never NaN), so the exported trees need no missing-value rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from profiles.types import HistoryEvent
from recommend.blend import normalize_scores
from recommend.interactions import InteractionMatrix, history_row
from recommend.model import ItemModel

DAY = 86_400.0
YEAR = 365.0 * DAY
#: The candidate sources the features describe (the engine's sources, in its order).
SOURCES = ("cf", "content", "segment", "trending", "context")
PER_SOURCE = ("rr", "norm", "rel")
FEATURES: tuple[str, ...] = (
    *(f"{s}_{f}" for s in SOURCES for f in PER_SOURCE),
    "cf_last",
    "cf_recent",
    "blend",
    "n_sources",
    "item_pop",
    "item_age_years",
    "item_idle_days",
    "time_gap_years",
    "category_match",
    "price_gap",
    "content_sim",
    "history_len",
    "recency_days",
    "purchases",
    "monetary",
    "mainstream",
    "pop_vs_mainstream",
    "has_segment",
)
_ANCHORS = 20  # most recent distinct items compared by content
_RECENT = 5  # most recent distinct items of the "cf_recent" feature
_PROFILE_ITEMS = 50  # most recent distinct items whose categories and prices make the profile
_HISTORY_SIZE = 200  # a profile keeps its 200 newest events (ProfileConfig.history_size)
#: Candidates a ranker orders: the union's best by blend score (a cascade; bounds serving cost).
MAX_CANDIDATES = 60
_NO_VALUE = -1.0
#: The blend-score column (the engine's fallback order; rows are tie-broken by it).
BLEND_COLUMN = FEATURES.index("blend")


def _no_similarity(_anchors: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
    return np.full(len(candidates), _NO_VALUE)


def _no_scores(_history: Mapping[str, float], candidates: Sequence[str]) -> np.ndarray:
    return np.zeros(len(candidates))


@dataclass(frozen=True)
class ItemFacts:
    """Catalog lookups: an item's categories and price (None: unknown), and ``similarity``
    (anchors, candidates) -> each candidate's cosine with the anchors' mean content vector, -1
    where unknown (:meth:`recommend.content.ContentService.similarity`); ``cf_scores`` (history,
    candidates) -> the serving CF model's scores of the candidates from that history alone."""

    categories: Callable[[str], Sequence[str]] = lambda _i: ()
    price: Callable[[str], float | None] = lambda _i: None
    similarity: Callable[[Sequence[str], Sequence[str]], np.ndarray] = _no_similarity
    cf_scores: Callable[[Mapping[str, float], Sequence[str]], np.ndarray] = _no_scores


@dataclass(frozen=True, eq=False)
class ItemStats:
    """Per-item popularity and timing over the interactions a ranker was trained on.

    ``pop`` is the percentile (0..1] of an item's distinct interacting users among the items
    that have any; ``mean_ts`` and ``last_ts`` the mean and newest time of its interactions.
    Items outside the stats (new since training) are unpopular and new. ``history`` and
    ``recency`` are the users' history lengths (distinct items) and days since their last
    interaction, sorted: a profile's own are read as percentiles of them, so a model learned on
    shorter histories (before a time cut, or an inner split) reads longer ones the same way."""

    item_ids: tuple[str, ...]
    pop: np.ndarray
    mean_ts: np.ndarray
    last_ts: np.ndarray
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recency: np.ndarray = field(default_factory=lambda: np.zeros(0))
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if not self.pop.shape == self.mean_ts.shape == self.last_ts.shape == (n,):
            raise ValueError("item stats arrays must match the item ids")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.item_ids)})

    @classmethod
    def from_matrix(cls, data: InteractionMatrix) -> ItemStats:
        users = data.item_user_counts().astype(np.float64)
        seen = users > 0
        pop = np.zeros(data.n_items)
        if seen.any():
            from scipy.stats import rankdata  # training only: serving processes skip SciPy

            pop[seen] = rankdata(users[seen]) / int(seen.sum())
        cols = data.matrix.indices
        total = np.bincount(cols, data.timestamps, minlength=data.n_items)
        mean_ts = np.where(seen, total / np.maximum(users, 1.0), 0.0)
        last_ts = np.zeros(data.n_items)
        np.maximum.at(last_ts, cols, data.timestamps)
        lengths = np.diff(data.matrix.indptr)
        active = lengths > 0
        user_last = np.zeros(data.n_users)
        np.maximum.at(user_last, data.entry_users(), data.timestamps)
        now = float(data.timestamps.max()) if data.nnz else 0.0
        history = np.sort(np.minimum(lengths[active], _HISTORY_SIZE).astype(np.float64))
        recency = np.sort((now - user_last[active]) / DAY)
        return cls(data.item_ids, pop, mean_ts, last_ts, history, recency)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "pop": self.pop,
            "mean_ts": self.mean_ts,
            "last_ts": self.last_ts,
            "history": self.history,
            "recency": self.recency,
        }

    @staticmethod
    def percentile(reference: np.ndarray, value: float) -> float:
        """The share of ``reference`` (sorted) at or below ``value`` (0.5 without one)."""
        if reference.size == 0:
            return 0.5
        return float(np.searchsorted(reference, value, side="right")) / reference.size

    def lookup(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(known, pop, mean_ts, last_ts)`` for ``ids`` (unknown: False, 0, 0, 0)."""
        rows = np.fromiter((self.index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        known = rows >= 0
        safe = np.where(known, rows, 0)
        if not self.item_ids:
            zero = np.zeros(len(ids))
            return known, zero, zero, zero
        return (
            known,
            np.where(known, self.pop[safe], 0.0),
            np.where(known, self.mean_ts[safe], 0.0),
            np.where(known, self.last_ts[safe], 0.0),
        )


@dataclass(frozen=True)
class ProfileView:
    """A user's recent positive history, most recent first, one entry per item (its summed
    weight and latest time), with the purchase count and spend seen in it."""

    items: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()
    ts: tuple[float, ...] = ()
    purchases: int = 0
    monetary: float = 0.0
    has_segment: bool = False

    @classmethod
    def from_history(
        cls,
        history: Iterable[HistoryEvent],
        price: Callable[[str], float | None] = lambda _i: None,
        *,
        has_segment: bool = False,
    ) -> ProfileView:
        weights: dict[str, float] = {}
        latest: dict[str, float] = {}
        purchases, monetary = 0, 0.0
        for h in history:
            if h.type == "purchase":
                purchases += 1
                monetary += price(h.item_id) or 0.0
            if h.weight <= 0:
                continue
            weights[h.item_id] = weights.get(h.item_id, 0.0) + h.weight
            latest[h.item_id] = max(latest.get(h.item_id, h.ts), h.ts)
        order = sorted(latest, key=lambda i: (-latest[i], i))
        return cls(
            tuple(order),
            tuple(weights[i] for i in order),
            tuple(latest[i] for i in order),
            purchases,
            monetary,
            has_segment,
        )

    @classmethod
    def from_row(cls, data: InteractionMatrix, user: int) -> ProfileView:
        """One user's training row of an interaction matrix (no event types: no purchases)."""
        lo, hi = data.matrix.indptr[user], data.matrix.indptr[user + 1]
        cols = data.matrix.indices[lo:hi]
        order = np.lexsort((cols, -data.timestamps[lo:hi]))
        return cls(
            tuple(data.item_ids[c] for c in cols[order]),
            tuple(float(w) for w in data.matrix.data[lo:hi][order]),
            tuple(float(t) for t in data.timestamps[lo:hi][order]),
        )


def _source_columns(
    lists: Mapping[str, tuple[Sequence[str], np.ndarray]], index: Mapping[str, int], n: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-source ``[n, 3]`` columns (rr, norm, rel) and each source's normalized scores."""
    out = np.zeros((n, len(SOURCES) * len(PER_SOURCE)))
    norms: dict[str, np.ndarray] = {}
    for s, name in enumerate(SOURCES):
        got = lists.get(name)
        if got is None or len(got[0]) == 0:
            continue
        ids, scores = got
        scores = np.asarray(scores, dtype=np.float64)[: len(ids)]
        rows = np.fromiter((index[i] for i in ids), dtype=np.int64, count=len(ids))
        norm = normalize_scores(scores, "rank")
        top = float(scores.max()) if scores.size else 0.0
        base = s * len(PER_SOURCE)
        out[rows, base] = 1.0 / (1.0 + np.arange(len(ids)))
        out[rows, base + 1] = norm
        out[rows, base + 2] = scores / top if top > 0 else 0.0
        full = np.zeros(n)
        full[rows] = norm
        norms[name] = full
    return out, norms


def candidate_features(
    lists: Mapping[str, tuple[Sequence[str], np.ndarray]],
    profile: ProfileView,
    catalog: ItemFacts,
    stats: ItemStats,
    now: float,
    weights: Mapping[str, float],
) -> tuple[list[str], np.ndarray]:
    """The union of the sources' candidates (first-seen order; the :data:`MAX_CANDIDATES` with
    the best blend score when there are more) and their ``[n, len(FEATURES)]`` feature matrix
    (float64, finite)."""
    ids: list[str] = []
    index: dict[str, int] = {}
    for name in SOURCES:
        for item in lists.get(name, ((), None))[0]:
            if item not in index:
                index[item] = len(ids)
                ids.append(item)
    n = len(ids)
    if n == 0:
        return ids, np.zeros((0, len(FEATURES)))
    source_cols, norms = _source_columns(lists, index, n)
    blend = sum((float(weights.get(name, 0.0)) * norm for name, norm in norms.items()), np.zeros(n))
    n_sources = sum((norm > 0).astype(np.float64) for norm in norms.values()) + np.zeros(n)
    if n > MAX_CANDIDATES:  # the ranker reorders the blend's best: keep those, in first-seen order
        keep = np.sort(np.lexsort((np.arange(n), -blend))[:MAX_CANDIDATES])
        ids = [ids[j] for j in keep]
        source_cols, blend, n_sources = source_cols[keep], blend[keep], n_sources[keep]
        n = len(ids)

    known, pop, mean_ts, last_ts = stats.lookup(ids)
    item_age = np.where(known, np.maximum(now - mean_ts, 0.0) / YEAR, 0.0)
    item_idle = np.where(known, np.maximum(now - last_ts, 0.0) / DAY, _NO_VALUE)
    h_known, h_pop, _, _ = stats.lookup(profile.items)
    user_ts = float(np.mean(profile.ts)) if profile.ts else now
    time_gap = np.where(known, np.abs(user_ts - mean_ts) / YEAR, _NO_VALUE)
    mainstream = float(np.mean(h_pop[h_known])) if h_known.any() else 0.0

    category_match, price_gap = _catalog_matches(ids, profile, catalog)
    cf_last, cf_recent = (_recent_cf(ids, profile, catalog, n) for n in (1, _RECENT))
    content_sim = np.asarray(catalog.similarity(profile.items[:_ANCHORS], ids), np.float64)

    recency = max((now - profile.ts[0]) / DAY, 0.0) if profile.ts else 365.0
    user = np.array(
        [
            stats.percentile(stats.history, float(len(profile.items))),
            stats.percentile(stats.recency, recency),
            float(profile.purchases),
            math.log1p(max(profile.monetary, 0.0)),
            mainstream,
        ]
    )
    X = np.column_stack(
        [
            source_cols,
            cf_last,
            cf_recent,
            blend,
            n_sources,
            pop,
            item_age,
            item_idle,
            time_gap,
            category_match,
            price_gap,
            content_sim,
            np.broadcast_to(user, (n, user.size)),
            pop - mainstream,
            np.full(n, float(profile.has_segment)),
        ]
    )
    return ids, X


def _recent_cf(ids: Sequence[str], profile: ProfileView, catalog: ItemFacts, n: int) -> np.ndarray:
    """The CF scores of the candidates from the ``n`` most recent items alone, relative to the
    best of them (what the user is after now, beside what the whole history says)."""
    if not profile.items:
        return np.zeros(len(ids))
    recent = dict(zip(profile.items[:n], profile.weights[:n], strict=True))
    scores = np.asarray(catalog.cf_scores(recent, ids), dtype=np.float64)
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else np.zeros(len(ids))


def _catalog_matches(
    ids: Sequence[str], profile: ProfileView, catalog: ItemFacts
) -> tuple[np.ndarray, np.ndarray]:
    """Share of the history's weight in each candidate's categories; |log price - the history's
    mean log price| (-1 when either side has no price)."""
    share: dict[str, float] = {}
    total = 0.0
    prices: list[float] = []
    recent = zip(profile.items[:_PROFILE_ITEMS], profile.weights[:_PROFILE_ITEMS], strict=True)
    for item, w in recent:
        total += w
        for cat in catalog.categories(item):
            share[cat] = share.get(cat, 0.0) + w
        p = catalog.price(item)
        if p is not None and p >= 0:
            prices.append(math.log1p(p))
    match = np.zeros(len(ids))
    gap = np.full(len(ids), _NO_VALUE)
    mean_price = float(np.mean(prices)) if prices else None
    for j, item in enumerate(ids):
        if total > 0:
            cats = catalog.categories(item)
            match[j] = min(sum(share.get(c, 0.0) for c in set(cats)) / total, 1.0)
        if mean_price is not None:
            p = catalog.price(item)
            if p is not None and p >= 0:
                gap[j] = abs(math.log1p(p) - mean_price)
    return match, gap


def cf_scores(
    model: ItemModel | None, history: Mapping[str, float], ids: Sequence[str]
) -> np.ndarray:
    """A CF model's scores of ``ids`` from ``history`` (0 for items it does not know, and for
    all without a model or known history items)."""
    out = np.zeros(len(ids))
    if model is None:
        return out
    row = history_row(history, model.item_index, model.n_items)
    if row.nnz == 0:
        return out
    cols = np.fromiter((model.item_index.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    known = cols >= 0
    out[known] = model.score_items(row, cols[known])[0]
    return out

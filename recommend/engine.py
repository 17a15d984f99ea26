"""The recommendation engine: candidate sources -> business filters -> blend -> diversity -> reasons.

Sources return ``(ids, scores)``; every source is asked through an over-fetching loop (or a
filter-aware search) so ``k`` results come back whenever ``k`` eligible items exist. Strategies:

- ``cf``: collaborative filtering folded in from the user's *current* history (no retrain needed
  for new events);
- ``content``: the user vector against the item index;
- ``segment``: recently popular among users of the same segment;
- ``trending``: time-decayed popularity;
- ``hybrid``: the blend of all available sources with weights from settings (or tuned ones), plus
  ``context`` (items similar to the one being viewed) when a context item is given.

Cold start: with no usable history, hybrid answers from segment-popular when a segment applies,
trending otherwise. :meth:`Recommender.for_segment` answers the same list for everyone in a
segment (segment-popular only), so an edge cache can share it per segment.

Ordering the hybrid: when a learned ranker is loaded (``tailor train ranker``, see
:mod:`recommend.ranker`), every source proposes ``ranker.candidates`` items and the ranker orders
their union from :func:`recommend.ranker_features.candidate_features`; otherwise the blend does,
with the serving CF version's tuned weights (``tailor train cf`` and ``tailor evaluate --tune``
write them next to the model) when it has any, else the configured ones. Either way an item's
``source`` (and so its ``reason``) is the source whose weighted, rank-normalized score
contributed most to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from embeddings import SearchFilter
from observability import metrics
from observability.tracing import span
from recommend.blend import blend, top_sources
from recommend.content import ContentService, History
from recommend.diversity import mmr
from recommend.filters import ItemFilter
from recommend.ranker import Ranker, RankerSlot
from recommend.ranker_features import ItemFacts, ProfileView, candidate_features, cf_scores
from recommend.slots import ModelSlot
from recommend.trending import TrendingModel
from recommend.types import Recommendation
from storage.types import ItemRecord

__all__ = ["DEFAULT_WEIGHTS", "STRATEGIES", "ModelSlot", "RecommendRequest", "Recommender"]

STRATEGIES = ("hybrid", "cf", "content", "segment", "trending")
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "cf": 1.0,
    "content": 0.5,
    "segment": 0.3,
    "trending": 0.2,
    "context": 0.8,
}
_VERBS = {
    "view": "viewed",
    "click": "viewed",
    "add_to_cart": "added",
    "purchase": "bought",
    "rate": "rated",
}

#: ``(segment_id, k, accept) -> (ids, scores)``: up to ``k`` items popular in the segment for which
#: ``accept(item_id)`` is true, best first (scores: any non-increasing float32 array).
SegmentPopular = Callable[[str, int, Callable[[str], bool]], tuple[list[str], np.ndarray]]


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    history: History = ()
    k: int = 10
    strategy: str = "hybrid"
    filter: ItemFilter = field(default_factory=ItemFilter)
    diversity: float = 0.0
    max_per_category: int | None = None
    context_item: str | None = None
    segment_id: str | None = None
    segment_name: str | None = None
    # Blend weights for this request (an experiment's variant); None: the serving ones. With
    # weights set the blend orders the candidates (the learned ranker is not used).
    weights: Mapping[str, float] | None = None


class Recommender:
    def __init__(
        self,
        *,
        content: ContentService,
        trending: TrendingModel,
        cf: ModelSlot,
        item_of: Callable[[str], ItemRecord | None],
        all_items: Callable[[], Iterable[ItemRecord]],
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        exclude_types: Sequence[str] = ("purchase",),
        segment_popular: SegmentPopular | None = None,
        ranker: RankerSlot | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``ranker``: the serving learned ranker's slot (a new, empty one by default);
        ``clock``: "now" for the ranker's time features (default: the trending model's)."""
        self.content = content
        self.trending = trending
        self.cf = cf
        self.item_of = item_of
        self.all_items = all_items
        self.weights = dict(weights)
        self.exclude_types = frozenset(exclude_types)
        self.segment_popular = segment_popular
        self.ranker = ranker if ranker is not None else RankerSlot()
        self.clock = clock if clock is not None else trending.clock
        self.facts = ItemFacts(
            categories=self._categories,
            price=self._price,
            similarity=content.similarity,
            cf_scores=lambda history, ids: cf_scores(self.cf.model, history, ids),
        )

    def blend_weights(self) -> Mapping[str, float]:
        """Tuned weights of the serving CF version when it has some, else the configured ones."""
        return self.cf.weights or self.weights

    # ------------------------------------------------------------------ sources
    def _accept(self, filt: ItemFilter) -> Callable[[str], bool]:
        return lambda item_id: filt.accepts(self.item_of(item_id))

    @staticmethod
    def _overfetch(
        fetch: Callable[[int], tuple[list[str], np.ndarray]], k: int, accept: Callable[[str], bool]
    ) -> tuple[list[str], np.ndarray]:
        n = max(k * 3, 30)
        while True:
            ids, scores = fetch(n)
            keep = [j for j, i in enumerate(ids) if accept(i)]
            if len(keep) >= k or len(ids) < n:
                return [ids[j] for j in keep[:k]], np.asarray(scores, dtype=np.float32)[keep[:k]]
            n *= 4

    def _cf(
        self, history: History, k: int, filt: ItemFilter
    ) -> tuple[list[str], np.ndarray] | None:
        model, _, _, factors = self.cf.state
        if model is None:
            return None
        weights: dict[str, float] = {}
        for h in history:
            w = h.weight * factors.get(h.type, 1.0) if factors else h.weight
            weights[h.item_id] = weights.get(h.item_id, 0.0) + w
        if not weights:
            return None
        exclude = filt.exclude_ids
        if factors:  # items whose events now weigh nothing are still seen
            exclude = exclude | {h.item_id for h in history if h.weight > 0}
        return self._overfetch(
            lambda n: model.recommend(weights, n, exclude), k, self._accept(filt)
        )

    def sources(
        self, req: RecommendRequest, filt: ItemFilter, k: int
    ) -> dict[str, tuple[list[str], np.ndarray]]:
        out: dict[str, tuple[list[str], np.ndarray]] = {}
        wanted = (
            {req.strategy} if req.strategy != "hybrid" else {"cf", "content", "segment", "trending"}
        )
        search_filter = None
        if "content" in wanted or req.context_item:
            search_filter = filt.search_filter(self.all_items)
        if "cf" in wanted:
            with _timed("cf"):
                got = self._cf(req.history, k, filt)
            if got is not None and got[0]:
                out["cf"] = got
        if "content" in wanted and self.content.ready and req.history:
            assert search_filter is not None
            # Like CF, content never re-suggests what the user already interacted with.
            seen = SearchFilter(
                search_filter.exclude_ids | {h.item_id for h in req.history},
                search_filter.allowed_ids,
                search_filter.categories,
                search_filter.available_only,
            )
            with _timed("content"):
                ids, scores = self.content.for_user(req.history, k, seen)
            if ids:
                out["content"] = (ids, scores)
        segment_popular = self.segment_popular
        if "segment" in wanted and req.segment_id and segment_popular is not None:
            with _timed("segment"):
                ids, scores = segment_popular(req.segment_id, k, self._accept(filt))
            if ids:
                out["segment"] = (ids, scores)
        if (
            req.context_item
            and self.content.has_item(req.context_item)
            and req.strategy == "hybrid"
        ):
            assert search_filter is not None
            with _timed("context"):
                out["context"] = self.content.similar(req.context_item, k, search_filter)
        cold = req.strategy == "hybrid" and not req.history and "segment" in out
        if "trending" in wanted and not cold:
            with _timed("trending"):
                out["trending"] = self.trending.top(
                    k, exclude=filt.exclude_ids, accept=self._accept(filt)
                )
        return out

    def candidate_lists(
        self, req: RecommendRequest, n: int
    ) -> tuple[dict[str, tuple[list[str], np.ndarray]], ItemFilter]:
        """Up to ``n`` candidates from each source the request's strategy asks (purchased
        items excluded), and the filter they passed; ranker training reads the same lists."""
        purchased = {h.item_id for h in req.history if h.type in self.exclude_types}
        filt = req.filter.with_excluded(purchased)
        return self.sources(req, filt, n), filt

    # ------------------------------------------------------------------ main entry
    def recommend(self, req: RecommendRequest) -> list[Recommendation]:
        if req.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {req.strategy!r}")
        started = time.perf_counter()
        with span("recommend", strategy=req.strategy, k=req.k):
            recs = self._recommend(req)
        metrics.child(metrics.RECOMMEND_DURATION, req.strategy).observe(
            time.perf_counter() - started
        )
        return recs

    def _recommend(self, req: RecommendRequest) -> list[Recommendation]:
        pool = max(req.k * 3, 30) if (req.diversity > 0 or req.max_per_category) else req.k
        ranker = (
            self.ranker.model
            if req.strategy == "hybrid" and req.history and req.weights is None
            else None
        )
        lists, filt = self.candidate_lists(req, max(pool, ranker.candidates) if ranker else pool)
        recs: list[Recommendation]
        if not lists:
            recs = []
        elif ranker is not None:
            recs = self._ranked(ranker, lists, req, pool)
        elif len(lists) == 1:  # one source: keep its own scores
            ((name, (ids, scores)),) = lists.items()
            recs = [
                Recommendation(i, float(s), name, "")
                for i, s in zip(ids[:pool], scores, strict=False)
            ]
        else:
            configured = req.weights if req.weights is not None else self.blend_weights()
            weights = {name: configured.get(name, 0.0) for name in lists}
            recs = blend(lists, weights, k=pool)
        recs += self._backfill(pool - len(recs), filt, {r.item_id for r in recs})
        if req.diversity > 0 or req.max_per_category:
            recs = mmr(
                recs,
                req.k,
                vector_of=self.content.item_vector,
                diversity=req.diversity,
                category_of=self._first_category,
                max_per_category=req.max_per_category,
            )
        # Explain only what is served: the anchor search costs a dot product per history item.
        anchors = _Anchors(req.history, self.content.item_vector)
        return [
            Recommendation(
                r.item_id, r.score, r.source, self._reason(r.item_id, r.source, req, anchors)
            )
            for r in recs[: req.k]
        ]

    def profile_view(self, req: RecommendRequest) -> ProfileView:
        """The request's history as the ranker's features read it."""
        return ProfileView.from_history(
            req.history, self._price, has_segment=req.segment_id is not None
        )

    def _ranked(
        self,
        ranker: Ranker,
        lists: Mapping[str, tuple[list[str], np.ndarray]],
        req: RecommendRequest,
        n: int,
    ) -> list[Recommendation]:
        """The blend's best candidates (``MAX_CANDIDATES`` of the union) ordered by the learned
        ranker, scores squashed to (0, 1); past those, the rest in blend order at score 0 (like
        backfilled items). ``source`` as the blend names it."""
        ids, X = candidate_features(
            lists, self.profile_view(req), self.facts, ranker.stats, self.clock(), ranker.weights
        )
        order, raw = ranker.order(X)
        order = order[:n]
        scores = 1.0 / (1.0 + np.exp(-raw[order]))
        top = top_sources(lists, self.blend_weights())
        recs = [
            Recommendation(ids[j], float(s), top[ids[j]], "")
            for j, s in zip(order, scores, strict=True)
        ]
        if len(recs) < n:  # a long page: the blend continues where the ranker stops
            ranked = set(ids)
            rest = [r for r in blend(lists, ranker.weights) if r.item_id not in ranked]
            recs += [Recommendation(r.item_id, 0.0, top[r.item_id], "") for r in rest]
        return recs[:n]

    def for_segment(
        self,
        segment_id: str,
        k: int,
        filt: ItemFilter | None = None,
        segment_name: str | None = None,
    ) -> list[Recommendation]:
        """Segment-popular items for everyone in ``segment_id`` (empty without the hook)."""
        source = self.segment_popular
        if source is None or k <= 0:
            return []
        filt = filt or ItemFilter()
        ids, scores = source(segment_id, k, self._accept(filt))
        reason = f"Popular with {segment_name or 'people like you'}"
        recs = [
            Recommendation(i, float(s), "segment", reason)
            for i, s in zip(ids[:k], np.asarray(scores, dtype=np.float32)[:k], strict=True)
        ]
        filled = self._backfill(k - len(recs), filt, set(ids))
        return recs + [
            Recommendation(r.item_id, r.score, r.source, self._fill_reason(r)) for r in filled
        ]

    def _backfill(self, n: int, filt: ItemFilter, chosen: set[str]) -> list[Recommendation]:
        """Up to ``n`` more accepted items when the sources ran short (a new visitor, a thin
        segment, a narrow filter): trending first, then the newest catalog items. A page is
        never empty while enough available items exist. Scores sit below every sourced one."""
        if n <= 0:
            return []
        accept = self._accept(filt)
        skip = filt.exclude_ids | chosen
        ids, _scores = self.trending.top(n, exclude=skip, accept=accept)
        out = [Recommendation(i, 0.0, "trending", "") for i in ids]
        if len(out) < n:
            taken = skip | set(ids)
            newest = sorted(
                (it for it in self.all_items() if it.id not in taken and filt.accepts(it)),
                key=lambda it: (-it.created_at, it.id),
            )
            out += [Recommendation(it.id, 0.0, "catalog", "") for it in newest[: n - len(out)]]
        return out

    def _fill_reason(self, rec: Recommendation) -> str:
        if rec.source == "trending":
            cat = self._first_category(rec.item_id)
            return f"Trending in {cat}" if cat else "Trending now"
        return "New in the shop"

    def _categories(self, item_id: str) -> tuple[str, ...]:
        item = self.item_of(item_id)
        return item.categories if item else ()

    def _price(self, item_id: str) -> float | None:
        item = self.item_of(item_id)
        return item.price if item else None

    def _first_category(self, item_id: str) -> str | None:
        item = self.item_of(item_id)
        return item.categories[-1] if item and item.categories else None

    def _reason(self, item_id: str, source: str, req: RecommendRequest, anchors: _Anchors) -> str:
        if source in ("trending", "catalog"):
            return self._fill_reason(Recommendation(item_id, 0.0, source, ""))
        if source == "segment":
            return f"Popular with {req.segment_name or 'people like you'}"
        if source == "context" and req.context_item:
            ctx = self.item_of(req.context_item)
            return f"Similar to {ctx.title}" if ctx else "Similar to what you are looking at"
        anchor = anchors.best(item_id)
        rec = self.item_of(anchor[0]) if anchor else None
        if anchor is None or rec is None:
            return "Picked for you"
        return f"Because you {_VERBS.get(anchor[1], 'viewed')} {rec.title}"


class _Anchors:
    """The user's 20 most recent distinct positive items and their vectors, gathered once per
    request; ``best`` names the one most similar to a recommended item (the newest on ties, and
    the newest of all when the item has no vector)."""

    def __init__(self, history: History, vector_of: Callable[[str], np.ndarray | None]) -> None:
        self.vector_of = vector_of
        recent: dict[str, str] = {}
        for h in reversed(history):
            if h.weight > 0 and h.item_id not in recent:
                recent[h.item_id] = h.type
                if len(recent) >= 20:
                    break
        self.items = list(recent.items())
        found = [(j, vector_of(item)) for j, (item, _) in enumerate(self.items)]
        known = [(j, v) for j, v in found if v is not None]
        self.known = [j for j, _ in known]
        self.matrix = np.vstack([v for _, v in known]) if known else None

    def best(self, item_id: str) -> tuple[str, str] | None:
        if not self.items:
            return None
        target = self.vector_of(item_id) if self.matrix is not None else None
        if target is None or self.matrix is None:
            return self.items[0]
        sims = self.matrix @ target
        return self.items[self.known[int(np.argmax(sims))]]


class _timed:
    """Times one candidate source (``tailor_recommend_source_duration_seconds``) in a span."""

    __slots__ = ("_span", "_started", "source")

    def __init__(self, source: str) -> None:
        self.source = source

    def __enter__(self) -> None:
        self._span = span("recommend.source", source=self.source)
        self._span.__enter__()
        self._started = time.perf_counter()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        metrics.child(metrics.SOURCE_DURATION, self.source).observe(
            time.perf_counter() - self._started
        )
        self._span.__exit__(kind, value, tb)

"""Trending: time-decayed popularity over the event log, global and per category.

Each item keeps one number, its decayed score ``s`` against a reference time ``r`` (the newest
event seen for it): an event of weight ``w`` at time ``t`` makes ``s = s * 0.5**((t - r) / h) + w``
when ``t >= r`` (else ``s += w * 0.5**((r - t) / h)``). Reading at ``now`` decays ``s`` to
``now``. This is O(1) per event, exact (no windowing artefacts), and independent of the order in
which events arrive, so a model bootstrapped from the log and one fed live agree.

"Now" for decay is the wall clock, or the newest event the model has seen when that is older: a
store loaded with last year's history, or a shop whose traffic paused, still ranks its items
(ranks do not change with a common decay factor, and scores do not underflow to zero).
:func:`anchored_since` anchors the start-up window the same way.

Thread-safety: ``add`` is called from the ingestion writer thread while requests read ``top``;
one lock guards the dictionaries, and ranked lists are cached for ``cache_s`` seconds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from storage.types import EventRecord

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 4.0,
    "purchase": 8.0,
    "rate": 2.0,
}


def anchored_since(now: float, newest_event_ts: float | None, window_s: float) -> float:
    """The start of a "recent" window of ``window_s``: measured back from now, or from the newest
    stored event when that is older (so old history still fills the window)."""
    anchor = now if newest_event_ts is None else min(now, newest_event_ts)
    return anchor - window_s


class TrendingModel:
    """Decayed popularity per item. ``top`` returns ``(ids, scores)`` best first."""

    name = "trending"

    def __init__(
        self,
        *,
        half_life_s: float = 48 * 3600.0,
        weights: Mapping[str, float] = DEFAULT_WEIGHTS,
        categories: Callable[[str], Iterable[str]] = lambda _i: (),
        clock: Callable[[], float],
        cache_s: float = 5.0,
    ) -> None:
        self.half_life_s = half_life_s
        self.weights = dict(weights)
        self.categories = categories
        self.clock = clock
        self.cache_s = cache_s
        self._score: dict[str, float] = {}
        self._ref: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ranked: dict[str | None, tuple[float, list[str], np.ndarray]] = {}

    def add_events(self, events: Iterable[EventRecord]) -> None:
        with self._lock:
            for ev in events:
                w = self.weights.get(ev.type)
                if not w or not ev.item_id:
                    continue
                self._add(ev.item_id, w, ev.ts)
            self._ranked.clear()

    def _add(self, item: str, w: float, t: float) -> None:
        ref = self._ref.get(item)
        if ref is None:
            self._score[item], self._ref[item] = w, t
        elif t >= ref:
            self._score[item] = self._score[item] * math.pow(0.5, (t - ref) / self.half_life_s) + w
            self._ref[item] = t
        else:
            self._score[item] += w * math.pow(0.5, (ref - t) / self.half_life_s)

    def forget_items(self, ids: Iterable[str]) -> None:
        with self._lock:
            for i in ids:
                self._score.pop(i, None)
                self._ref.pop(i, None)
            self._ranked.clear()

    def _rank(self, category: str | None, now: float) -> tuple[list[str], np.ndarray]:
        cached = self._ranked.get(category)
        if cached is not None and now - cached[0] < self.cache_s:
            return cached[1], cached[2]
        with self._lock:
            items = list(self._score)
            scores = np.fromiter(
                (self._score[i] for i in items), dtype=np.float64, count=len(items)
            )
            refs = np.fromiter((self._ref[i] for i in items), dtype=np.float64, count=len(items))
        if category is not None:
            keep = np.fromiter(
                (category in self.categories(i) for i in items), dtype=bool, count=len(items)
            )
            items = [i for i, k in zip(items, keep, strict=True) if k]
            scores, refs = scores[keep], refs[keep]
        anchor = min(now, float(refs.max())) if len(refs) else now
        decayed = scores * np.power(0.5, np.maximum(0.0, anchor - refs) / self.half_life_s)
        order = (
            np.lexsort((np.array(items, dtype=object).astype(str), -decayed))
            if items
            else np.array([], dtype=int)
        )
        ranked_ids = [items[k] for k in order]
        ranked_scores = decayed[order].astype(np.float32)
        self._ranked[category] = (now, ranked_ids, ranked_scores)
        return ranked_ids, ranked_scores

    def top(
        self,
        k: int,
        *,
        category: str | None = None,
        exclude: frozenset[str] = frozenset(),
        accept: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """The ``k`` most trending items now, optionally within a category and filtered."""
        ids, scores = self._rank(category, self.clock())
        out_ids: list[str] = []
        out_scores: list[float] = []
        for item, score in zip(ids, scores, strict=True):
            if item in exclude or (accept is not None and not accept(item)):
                continue
            out_ids.append(item)
            out_scores.append(float(score))
            if len(out_ids) >= k:
                break
        return out_ids, np.asarray(out_scores, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._score)

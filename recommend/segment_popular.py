"""Segment-popular: what is popular now among the users of each segment.

One time-decayed popularity model (:class:`~recommend.trending.TrendingModel`) per segment. Each
interaction event feeds the model of its profile's current segment (``segment_of``); when the
segment model is swapped, :meth:`SegmentPopularity.rebuild` replays the recent event log under
the new assignment. This is the "Popular with <segment>" candidate source.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from recommend.trending import TrendingModel, anchored_since
from storage.types import EventRecord


class SegmentPopularity:
    def __init__(
        self,
        segment_of: Callable[[str], str | None],
        *,
        events_since: Callable[[float], Iterable[EventRecord]],
        newest_event_ts: Callable[[], float | None] = lambda: None,
        half_life_s: float = 7 * 86400.0,
        window_s: float = 30 * 86400.0,
        clock: Callable[[], float],
        categories: Callable[[str], tuple[str, ...]] = lambda _i: (),
    ) -> None:
        """``segment_of(profile_key)``: the profile's live segment id (None: none applies).
        ``events_since(ts)``: the stored events from ``ts`` on (replayed by ``rebuild``);
        ``newest_event_ts()``: the newest stored event's time (the window ends there when that is
        older than now)."""
        self._newest = newest_event_ts
        self._segment_of = segment_of
        self._events_since = events_since
        self._half_life = half_life_s
        self._window = window_s
        self._clock = clock
        self._categories = categories
        self._lock = threading.Lock()
        self._models: dict[str, TrendingModel] = {}

    def _model(self, models: dict[str, TrendingModel], segment_id: str) -> TrendingModel:
        model = models.get(segment_id)
        if model is None:
            model = models[segment_id] = TrendingModel(
                half_life_s=self._half_life, clock=self._clock, categories=self._categories
            )
        return model

    def rebuild(self, assignments: Mapping[str, str]) -> None:
        """Replay the recent events under a new assignment (a segment model swap)."""
        models: dict[str, TrendingModel] = {}
        since = anchored_since(self._clock(), self._newest(), self._window)
        for ev in self._events_since(since):
            seg = assignments.get(ev.profile_key)
            if seg is not None and ev.item_id:
                self._model(models, seg).add_events([ev])
        with self._lock:
            self._models = models

    def add_events(self, events: list[EventRecord]) -> None:
        """Ingestion listener: count each interaction for its profile's current segment."""
        for ev in events:
            if not ev.item_id:
                continue
            seg = self._segment_of(ev.profile_key)
            if seg is not None:
                with self._lock:
                    model = self._model(self._models, seg)
                model.add_events([ev])

    def popular(
        self, segment_id: str, k: int, accept: Callable[[str], bool]
    ) -> tuple[list[str], np.ndarray]:
        """Up to ``k`` accepted items popular in the segment, best first."""
        model = self._models.get(segment_id)
        if model is None:
            return [], np.zeros(0, dtype=np.float32)
        return model.top(k, accept=accept)

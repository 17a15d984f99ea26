"""Segment serving over live profiles: training from profiles, live assignment, sizes, and the
model swap.

Every committed profile change re-assigns that profile at once (nearest centroid + rule
segments) and keeps the segment sizes current. Listeners added with :meth:`on_swap` hear every
model swap with the full assignment (``recommend.segment_popular`` rebuilds from it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from profiles.state import ProfileState
from profiles.types import ProfileConfig
from segments import (
    FEATURE_NAMES,
    Segment,
    SegmentingConfig,
    SegmentModel,
    SegmentModelStore,
    SegmentSizes,
    load_segments_file,
    train_segments,
)
from segments.types import ModelNotFound, SegmentError
from storage.types import Store

log = logging.getLogger("tailor.segments")


def segment_inputs(
    state: ProfileState, now: float, config: ProfileConfig
) -> tuple[dict[str, float], list[str]]:
    """(features, top categories) of a profile, as the segment model reads them."""
    return state.features(now, config), [c for c, _ in state.affinities(now, config)[:5]]


class SegmentService:
    """The serving segment model, live assignments of every profile, and segment sizes."""

    def __init__(
        self,
        store: Store,
        root: Path,
        *,
        profile_config: ProfileConfig,
        clock: Callable[[], float],
        segments_file: Path | None = None,
        config: SegmentingConfig | None = None,
    ) -> None:
        self.store = store
        self.config = config or SegmentingConfig(scaler="standard")
        self.models = SegmentModelStore(root)
        self.profile_config = profile_config
        self.clock = clock
        self.segments_file = segments_file
        self.model: SegmentModel | None = None
        self.version: str | None = None
        self.sizes = SegmentSizes()
        self._rules: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._swap_listeners: list[Callable[[Mapping[str, str]], None]] = []

    def on_swap(self, listener: Callable[[Mapping[str, str]], None]) -> None:
        """Call ``listener(assignments)`` (profile key -> segment id) after every model swap."""
        self._swap_listeners.append(listener)

    # ------------------------------------------------------------------ model lifecycle
    def load_latest(self) -> bool:
        """Swap in the newest stored model (if newer) and re-assign every profile."""
        versions = self.models.versions()
        if not versions or versions[-1] == self.version:
            return False
        model = self.models.load(versions[-1])
        self._install(model, versions[-1])
        return True

    def train(self, config: SegmentingConfig | None = None) -> SegmentModel:
        """Fit on every stored profile (features at now), write a version, swap it in."""
        now = self.clock()
        rows = []
        for key in self.store.iter_profile_keys():
            state = ProfileState.from_json(self.store.get_profile_state(key))
            rows.append((key, state.features(now, self.profile_config)))
        if len(rows) < 10:
            raise ValueError(f"need at least 10 profiles to train segments, have {len(rows)}")
        previous = self.model
        if previous is None:
            try:
                previous = self.models.latest()
            except ModelNotFound:
                previous = None
        file = (
            load_segments_file(self.segments_file)
            if self.segments_file and self.segments_file.exists()
            else None
        )
        started = time.time()
        model = train_segments(rows, config or self.config, previous, segments_file=file)
        version = self.models.write(model)
        log.info(
            "trained segments %s: k=%d on %d profiles in %.1fs",
            version,
            model.k,
            len(rows),
            time.time() - started,
        )
        self._install(model, version)
        return model

    def _install(self, model: SegmentModel, version: str) -> None:
        now = self.clock()
        assignments: dict[str, str] = {}
        rules: dict[str, list[str]] = {}
        for key in self.store.iter_profile_keys():
            state = ProfileState.from_json(self.store.get_profile_state(key))
            features, top = segment_inputs(state, now, self.profile_config)
            assignments[key] = model.assign(features)
            rules[key] = model.rule_segments(features, top)
        with self._lock:
            self.model, self.version = model, version
            self.sizes.reset(assignments)
            self._rules = rules
        log.info("serving segments %s (%d profiles assigned)", version, len(assignments))
        for listener in self._swap_listeners:
            listener(assignments)

    # ------------------------------------------------------------------ live updates
    def on_profiles(self, changed: dict[str, ProfileState | None]) -> None:
        """Ingestion listener: re-assign changed profiles at once; a profile that no longer
        exists (merged into a user's) leaves its segments."""
        gone = [key for key, state in changed.items() if state is None]
        if gone:
            self.forget(gone)
        model = self.model
        if model is None:
            return
        now = self.clock()
        for key, state in changed.items():
            if state is None:
                continue
            features, top = segment_inputs(state, now, self.profile_config)
            seg = model.assign(features)
            rules = model.rule_segments(features, top)
            with self._lock:
                self.sizes.assign(key, seg)
                self._rules[key] = rules

    def forget(self, profile_keys: Sequence[str]) -> int:
        """Erasure: drop these profiles' live assignments and rule memberships (sizes follow).

        Returns how many of the keys were members of a segment."""
        removed = 0
        with self._lock:
            for key in profile_keys:
                assigned = self.sizes.remove(key) is not None
                in_rules = bool(self._rules.pop(key, None))
                removed += assigned or in_rules
        return removed

    # ------------------------------------------------------------------ reads
    def segment_of(self, profile_key: str) -> str | None:
        return self.sizes.segment_of(profile_key)

    def segment_and_name(self, profile_key: str) -> tuple[str | None, str | None]:
        seg = self.sizes.segment_of(profile_key)
        return (seg, self.name_of(seg)) if seg is not None else (None, None)

    def rules_of(self, profile_key: str) -> list[str]:
        return list(self._rules.get(profile_key, ()))

    def segment(self, segment_id: str) -> Segment | None:
        model = self.model
        if model is None:
            return None
        try:
            seg = model.segment(segment_id)
        except SegmentError:
            return None
        return self._with_size(seg)

    def all_segments(self) -> list[Segment]:
        model = self.model
        return [] if model is None else [self._with_size(s) for s in model.all_segments()]

    def _with_size(self, seg: Segment) -> Segment:
        if seg.kind.value == "rule":
            size = sum(1 for rules in list(self._rules.values()) if seg.id in rules)
        else:
            size = self.sizes.size(seg.id)
        return replace(seg, size=size)

    def name_of(self, segment_id: str) -> str | None:
        seg = self.segment(segment_id)
        return seg.name if seg else None

    @staticmethod
    def feature_names() -> tuple[str, ...]:
        return FEATURE_NAMES

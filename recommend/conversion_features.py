"""Conversion-propensity inputs: the feature vector of a profile, and the training dataset.

`conversion_features` is what the model sees of one `ProfileState` at a time ``now``: every
`ProfileState.features` value plus features of the newest session and of the cart;
`feature_vector` orders them as a model's ``feature_names``. `build_dataset` replays the event
log once and snapshots every known profile at a series of cutoffs ``T`` (see
`conversion_cutoffs`): a snapshot's features see only events with ``ts < T`` and its label is
"a purchase in ``[T, T + horizon)``". Training (`recommend.conversion`) and serving
(`recommend.conversion_model`) both build their rows here, so they cannot drift apart.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from profiles.state import DAY, CategoryLookup, ProfileState
from profiles.types import ProfileConfig
from storage.types import EventRecord

_NEVER_DAYS = 365.0  # the same "never happened" stand-in ProfileState.features uses

SESSION_FEATURES = (
    "last_session_events",
    "last_session_views",
    "last_session_add_to_cart",
    "last_session_purchased",
    "last_session_duration_s",
    "sessions_7d",
    "days_since_last_cart",
    "open_cart",
)


# ---------------------------------------------------------------------------------- features
def feature_names() -> tuple[str, ...]:
    """Column order of the model's input: every `ProfileState.features` key, then sessions."""
    return (*ProfileState().features(0.0, ProfileConfig()).keys(), *SESSION_FEATURES)


def session_features(state: ProfileState, now: float) -> dict[str, float]:
    """Features of the newest session and of the cart, at ``now`` (UTC epoch seconds).

    ``ProfileState`` keeps per-session [first ts, last ts, views, purchased] and the newest
    weighted item interactions (``history``, which includes add_to_cart); a session's events
    and carts are the history entries inside its time span.
    """
    out = dict.fromkeys(SESSION_FEATURES, 0.0)
    out["days_since_last_cart"] = _NEVER_DAYS
    if state.sessions:
        # max by (last ts, id): a deterministic choice between sessions ending together.
        sid = max(state.sessions, key=lambda k: (state.sessions[k][1], k))
        first, last, views, purchased = state.sessions[sid][:4]
        in_span = [h for h in state.history if first <= h[0] <= last]
        out["last_session_events"] = float(len(in_span))
        out["last_session_views"] = views
        out["last_session_add_to_cart"] = float(sum(1 for h in in_span if h[3] == "add_to_cart"))
        out["last_session_purchased"] = purchased
        out["last_session_duration_s"] = last - first
        out["sessions_7d"] = float(sum(1 for s in state.sessions.values() if now - s[1] < 7 * DAY))
    last_cart = max((h[0] for h in state.history if h[3] == "add_to_cart"), default=None)
    if last_cart is not None:
        out["days_since_last_cart"] = max(0.0, (now - last_cart) / DAY)
        bought_after = state.last_purchase_ts is not None and state.last_purchase_ts >= last_cart
        out["open_cart"] = 0.0 if bought_after else 1.0
    return out


def conversion_features(state: ProfileState, now: float, config: ProfileConfig) -> dict[str, float]:
    """All model inputs for ``state`` at ``now``: profile features plus session features."""
    return {**state.features(now, config), **session_features(state, now)}


def feature_vector(feats: Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    """``feats`` as a float64 vector in ``names`` order (a model's ``feature_names``)."""
    # A feature the model knows but the state no longer gives is NaN: the trees route missing
    # values the way they learned to, instead of reading a misleading zero.
    return np.fromiter((feats.get(n, math.nan) for n in names), dtype=np.float64, count=len(names))


# ---------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class ConversionDataset:
    """Snapshots of profiles at cutoffs: ``X`` [rows, features] float64, ``y`` [rows] 0/1.

    ``cutoff_index`` [rows] says which of ``cutoffs`` (UTC epoch seconds, ascending) a row was
    taken at; ``profile_keys`` names the row's profile.
    """

    X: np.ndarray
    y: np.ndarray
    cutoff_index: np.ndarray
    profile_keys: list[str]
    cutoffs: tuple[float, ...]
    feature_names: tuple[str, ...]


def conversion_cutoffs(now: float, horizon_days: float, n_cutoffs: int) -> list[float]:
    """``n_cutoffs`` cutoffs one horizon apart, ascending, the last one ``now - horizon``."""
    if n_cutoffs < 2:
        raise ValueError("n_cutoffs must be >= 2 (at least one training and one holdout cutoff)")
    if horizon_days <= 0:
        raise ValueError("horizon_days must be > 0")
    h = horizon_days * DAY
    return [now - k * h for k in range(n_cutoffs, 0, -1)]


def build_dataset(
    events: Iterable[EventRecord],
    *,
    cutoffs: Sequence[float],
    horizon_days: float,
    config: ProfileConfig,
    categories: CategoryLookup,
) -> ConversionDataset:
    """Replay ``events`` (timestamp order, as `EventStore.iter_events` gives them) once.

    At each cutoff ``T`` every profile with an event before ``T`` is snapshotted *before* any
    event with ``ts >= T`` is applied; its label is a purchase in ``[T, T + horizon)``.
    """
    cuts = sorted(float(c) for c in cutoffs)
    names = feature_names()
    horizon = horizon_days * DAY
    end = cuts[-1] + horizon if cuts else -math.inf
    states: dict[str, ProfileState] = {}
    purchases: dict[str, list[float]] = {}
    rows: list[np.ndarray] = []
    keys: list[str] = []
    at: list[int] = []

    def snapshot(ci: int) -> None:
        t = cuts[ci]
        for key in sorted(states):
            rows.append(feature_vector(conversion_features(states[key], t, config), names))
            keys.append(key)
            at.append(ci)

    ci, prev = 0, -math.inf
    for ev in events:
        if ev.ts < prev:
            raise ValueError("events must come in timestamp order (EventStore.iter_events)")
        prev = ev.ts
        if ev.ts >= end:
            break
        while ci < len(cuts) and ev.ts >= cuts[ci]:
            snapshot(ci)
            ci += 1
        if ev.type == "purchase":
            purchases.setdefault(ev.profile_key, []).append(ev.ts)
        if ci < len(cuts):  # states are only read at cutoffs: after the last one, labels only
            states.setdefault(ev.profile_key, ProfileState()).apply(ev, config, categories)
    while ci < len(cuts):
        snapshot(ci)
        ci += 1

    y = np.zeros(len(keys), dtype=np.int8)
    for r, (key, ci) in enumerate(zip(keys, at, strict=True)):
        times = purchases.get(key)
        if times:
            j = bisect.bisect_left(times, cuts[ci])
            y[r] = j < len(times) and times[j] < cuts[ci] + horizon
    X = np.vstack(rows) if rows else np.empty((0, len(names)), dtype=np.float64)
    return ConversionDataset(X, y, np.asarray(at, dtype=np.int32), keys, tuple(cuts), names)

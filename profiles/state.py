"""A user's profile as an order-independent aggregate of their events.

Every part of the state is a commutative aggregate (counts, sums, min/max, per-day buckets,
exponentially decayed sums kept against a reference time, top-N by a total order). So applying
events one at a time in arrival order (the live path) and replaying the log in timestamp order
(``tailor profiles rebuild``) give the same state, and merging two states (identity resolution:
an anonymous history joins a user's profile) is just another combination.

Windowed counts (7 and 30 days) come from per-day buckets. Buckets older than 31 days before the
newest event are pruned, so a state stays small however long a user's history is. Features that
depend on "now" (recency, windows, decayed affinities) are computed at read time.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from profiles.types import HistoryEvent, ProfileConfig
from storage.types import EventRecord

DAY = 86_400.0
_BUCKET_DAYS = 31
_NEVER_DAYS = 365.0
WINDOW_TYPES = ("view", "click", "add_to_cart", "purchase", "search", "rate")
_WINDOW_NAMES = {
    "view": "views",
    "click": "clicks",
    "add_to_cart": "add_to_cart",
    "purchase": "purchases",
    "search": "searches",
    "rate": "ratings",
}

CategoryLookup = Callable[[str], Iterable[str]]


def _decay(value: float, dt: float, half_life_s: float) -> float:
    return value * math.pow(0.5, dt / half_life_s)


@dataclass
class ProfileState:
    counts: dict[str, int] = field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None
    last_purchase_ts: float | None = None
    last_channel: tuple[float, str] | None = None
    monetary: float = 0.0
    engagement: float = 0.0
    orders: set[str] = field(default_factory=set)
    days: dict[int, dict[str, int]] = field(default_factory=dict)
    # session id -> [first ts, last ts, views, purchased]
    sessions: dict[str, list[float]] = field(default_factory=dict)
    # category -> [decayed value at ref, ref ts]
    affinity: dict[str, list[float]] = field(default_factory=dict)
    # the newest interactions, oldest first
    history: list[HistoryEvent] = field(default_factory=list)

    # ------------------------------------------------------------------ updates
    def apply(self, ev: EventRecord, config: ProfileConfig, categories: CategoryLookup) -> None:
        self.apply_many((ev,), config, categories)

    def apply_many(
        self, events: Iterable[EventRecord], config: ProfileConfig, categories: CategoryLookup
    ) -> None:
        """:meth:`apply` each event in order. The one implementation of both: the ingest writer
        hands a profile's events of a write group over at once, so what does not change per
        event (the config, this state's containers) is looked up once."""
        counts, days, sessions = self.counts, self.days, self.sessions
        weights, size = config.weights, config.history_size
        half = config.affinity_half_life_days * DAY
        first, last, last_channel = self.first_ts, self.last_ts, self.last_channel
        engagement = self.engagement
        history = self.history
        new_entry = tuple.__new__  # HistoryEvent(...) without its Python-level __new__
        for ev in events:
            t, etype = ev.ts, ev.type
            counts[etype] = counts.get(etype, 0) + 1
            # Plain comparisons rather than min()/max(): this runs for every ingested event.
            if first is None or t < first:
                first = t
            if last is None or t > last:
                last = t
            # (t, channel) > last_channel, without building the pair for every event.
            if (
                last_channel is None
                or t > last_channel[0]
                or (t == last_channel[0] and ev.channel > last_channel[1])
            ):
                last_channel = (t, ev.channel)
            weight = float(weights.get(etype, 0.0))
            if etype == "rate":
                weight *= float(ev.properties.get("value") or 0.0) / 5.0
            engagement += weight
            if etype == "purchase":
                price = float(ev.properties.get("price") or 0.0)
                qty = int(ev.properties.get("quantity") or 1)
                self.monetary += price * qty
                self.orders.add(str(ev.properties.get("orderId") or ev.session_id or ev.message_id))
                self.last_purchase_ts = (
                    t if self.last_purchase_ts is None else max(self.last_purchase_ts, t)
                )
            day = int(t // DAY)
            bucket = days.get(day)
            if bucket is not None:
                # The common case (another event on a day already kept): see _add_day.
                bucket[etype] = bucket.get(etype, 0) + 1
            else:
                self._add_day(day, etype, 1)
            sid = ev.session_id
            if sid:
                s = sessions.get(sid)
                if s is None:
                    sessions[sid] = [t, t, float(etype == "view"), float(etype == "purchase")]
                else:
                    if t < s[0]:
                        s[0] = t
                    if t > s[1]:
                        s[1] = t
                    # The flags are 0.0 or 1.0: += 1.0 on a view, max(.., 1.0) on a purchase.
                    if etype == "view":
                        s[2] += 1.0
                    elif etype == "purchase" and s[3] < 1.0:
                        s[3] = 1.0
            item = ev.item_id
            if item and weight > 0:
                for cat in categories(item):
                    self._add_affinity(cat, weight, t, half)
                entry = new_entry(HistoryEvent, (t, ev.message_id, item, etype, weight))
                # Kept sorted and cut to the ``size`` newest (as _add_history).
                if not history or entry >= history[-1]:
                    history.append(entry)
                else:
                    bisect.insort(history, entry)
                if len(history) > size:
                    del history[0]
        self.first_ts, self.last_ts, self.last_channel = first, last, last_channel
        self.engagement = engagement

    @staticmethod
    def event_weight(ev: EventRecord, config: ProfileConfig) -> float:
        w = float(config.weights.get(ev.type, 0.0))
        if ev.type == "rate":
            w *= float(ev.properties.get("value") or 0.0) / 5.0
        return w

    def _add_day(self, day: int, etype: str, n: int) -> None:
        bucket = self.days.get(day)
        if bucket is not None:
            # The common case (another event on a day already kept): every kept day is within
            # the window of the newest one, so nothing to prune and no max() over the days.
            bucket[etype] = bucket.get(etype, 0) + n
            return
        newest = max(self.days) if self.days else day
        if day < max(newest, day) - _BUCKET_DAYS:
            return
        bucket = self.days.setdefault(day, {})
        bucket[etype] = bucket.get(etype, 0) + n
        if day > newest:
            for old in [d for d in self.days if d < day - _BUCKET_DAYS]:
                del self.days[old]

    def _add_affinity(self, cat: str, w: float, t: float, half: float) -> None:
        cur = self.affinity.get(cat)
        if cur is None:
            self.affinity[cat] = [w, t]
        elif t >= cur[1]:
            self.affinity[cat] = [_decay(cur[0], t - cur[1], half) + w, t]
        else:
            cur[0] += _decay(w, cur[1] - t, half)

    def _add_history(self, entry: HistoryEvent, size: int) -> None:
        # Kept sorted and cut to the ``size`` newest: the same set whatever the arrival order.
        bisect.insort(self.history, entry)
        if len(self.history) > size:
            del self.history[0]

    def merge(self, other: ProfileState, config: ProfileConfig) -> None:
        """Fold ``other`` (e.g. an anonymous visitor's state) into this one."""
        for k, v in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v
        for name in ("first_ts",):
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, b if a is None else a if b is None else min(a, b))
        for name in ("last_ts", "last_purchase_ts"):
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, b if a is None else a if b is None else max(a, b))
        if other.last_channel and (
            self.last_channel is None or other.last_channel > self.last_channel
        ):
            self.last_channel = other.last_channel
        self.monetary += other.monetary
        self.engagement += other.engagement
        self.orders |= other.orders
        for day, bucket in sorted(other.days.items()):
            for etype, n in bucket.items():
                self._add_day(day, etype, n)
        for sid, s in other.sessions.items():
            mine = self.sessions.get(sid)
            if mine is None:
                self.sessions[sid] = list(s)
            else:
                self.sessions[sid] = [
                    min(mine[0], s[0]),
                    max(mine[1], s[1]),
                    mine[2] + s[2],
                    max(mine[3], s[3]),
                ]
        half = config.affinity_half_life_days * DAY
        for cat, (value, ref) in other.affinity.items():
            self._add_affinity(cat, value, ref, half)
        for entry in other.history:
            self._add_history(entry, config.history_size)

    # ------------------------------------------------------------------ reads
    def recent_history(self, size: int) -> list[HistoryEvent]:
        return self.history[-size:]

    def window(self, etype: str, days: int, now: float) -> int:
        today = int(now // DAY)
        return sum(b.get(etype, 0) for d, b in self.days.items() if today - days < d <= today)

    def affinities(self, now: float, config: ProfileConfig) -> list[tuple[str, float]]:
        half = config.affinity_half_life_days * DAY
        scored = [
            (cat, _decay(v, max(0.0, now - ref), half)) for cat, (v, ref) in self.affinity.items()
        ]
        scored.sort(key=lambda p: (-p[1], p[0]))
        return scored

    def features(self, now: float, config: ProfileConfig) -> dict[str, float]:
        """Named numeric features at time ``now`` (UTC epoch seconds). Rounded for stable output."""
        views = self.counts.get("view", 0)
        n_sessions = len(self.sessions)
        durations = [s[1] - s[0] for s in self.sessions.values()]
        session_views = sum(s[2] for s in self.sessions.values())
        converted = sum(1 for s in self.sessions.values() if s[3] > 0)
        frequency = len(self.orders)
        out: dict[str, float] = {
            "events": float(sum(self.counts.values())),
            "recency_days": (now - self.last_ts) / DAY if self.last_ts is not None else _NEVER_DAYS,
            "days_since_last_purchase": (
                (now - self.last_purchase_ts) / DAY
                if self.last_purchase_ts is not None
                else _NEVER_DAYS
            ),
            "frequency": float(frequency),
            "monetary": self.monetary,
            "avg_order_value": self.monetary / frequency if frequency else 0.0,
            "sessions": float(n_sessions),
            "views_per_session": session_views / n_sessions if n_sessions else 0.0,
            "avg_session_duration_s": sum(durations) / n_sessions if n_sessions else 0.0,
            "add_to_cart_rate": self.counts.get("add_to_cart", 0) / views if views else 0.0,
            "conversion_rate": converted / n_sessions if n_sessions else 0.0,
            "engagement_score": self.engagement,
            "category_diversity": float(len(self.affinity)),
        }
        for etype in WINDOW_TYPES:
            name = _WINDOW_NAMES[etype]
            out[f"{name}_7d"] = float(self.window(etype, 7, now))
            out[f"{name}_30d"] = float(self.window(etype, 30, now))
            out[f"{name}_total"] = float(self.counts.get(etype, 0))
        return {k: round(max(v, 0.0) if k.endswith("_days") else v, 6) for k, v in out.items()}

    # ------------------------------------------------------------------ persistence
    def to_json(self) -> dict[str, Any]:
        """The state as a JSON-ready document for the store's encoder (orjson). ``history``
        holds plain tuples: orjson encodes them as arrays, and not the HistoryEvent named
        tuples; ``tuple`` is the cheapest conversion of a full (200-entry) history."""
        return {
            "v": 1,
            "counts": self.counts,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "last_purchase_ts": self.last_purchase_ts,
            "last_channel": list(self.last_channel) if self.last_channel else None,
            "monetary": self.monetary,
            "engagement": self.engagement,
            "orders": sorted(self.orders),
            "days": {str(d): b for d, b in self.days.items()},
            "sessions": self.sessions,
            "affinity": self.affinity,
            "history": list(map(tuple, self.history)),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> ProfileState:
        if not doc:
            return cls()
        lc = doc.get("last_channel")
        return cls(
            counts=dict(doc["counts"]),
            first_ts=doc["first_ts"],
            last_ts=doc["last_ts"],
            last_purchase_ts=doc["last_purchase_ts"],
            last_channel=(float(lc[0]), str(lc[1])) if lc else None,
            monetary=float(doc["monetary"]),
            engagement=float(doc["engagement"]),
            orders=set(doc["orders"]),
            days={int(d): dict(b) for d, b in doc["days"].items()},
            sessions={k: list(v) for k, v in doc["sessions"].items()},
            affinity={k: list(v) for k, v in doc["affinity"].items()},
            history=sorted(
                HistoryEvent(float(h[0]), str(h[1]), str(h[2]), str(h[3]), float(h[4]))
                for h in doc["history"]
            ),
        )

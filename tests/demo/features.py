"""Per-user behavioural features computed from the event file, the way a profile would."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import numpy as np

FEATURES = (
    "recency_days",
    "sessions",
    "monetary",
    "views",
    "purchases",
    "events_per_session",
    "conversion",
)


def identity_map(events: list[dict[str, Any]]) -> dict[str, str]:
    """anonymousId -> userId from identify events."""
    return {e["anonymousId"]: e["userId"] for e in events if e["type"] == "identify"}


def user_features(events: list[dict[str, Any]], user_ids: list[str], end: datetime) -> np.ndarray:
    """Matrix (len(user_ids), len(FEATURES)), anonymous activity merged via identify."""
    links = identity_map(events)
    sessions: dict[str, set[str]] = defaultdict(set)
    last: dict[str, datetime] = {}
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e["type"] == "identify":
            continue
        user = e.get("userId") or links.get(e.get("anonymousId", ""))
        if user is None:
            continue
        sessions[user].add(e["sessionId"])
        last[user] = datetime.fromisoformat(e["timestamp"])
        counts[user]["events"] += 1
        counts[user][e["type"]] += 1
        if e["type"] == "purchase":
            props = e["properties"]
            counts[user]["monetary"] += props["price"] * props["quantity"]
    rows = []
    for user in user_ids:
        c = counts[user]
        n_sessions = len(sessions[user])
        rows.append(
            [
                (end - last[user]).total_seconds() / 86_400 if user in last else 365.0,
                n_sessions,
                c["monetary"],
                c["view"],
                c["purchase"],
                c["events"] / max(n_sessions, 1),
                c["purchase"] / max(c["view"], 1.0),
            ]
        )
    return np.asarray(rows, dtype=float)

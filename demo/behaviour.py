"""How each persona shops: session counts, timing, session length and funnel probabilities.

The numbers are chosen so the four personas separate cleanly on recency, frequency,
monetary value, views, sessions, session length and conversion (segmentation is checked
against them with an adjusted Rand index >= 0.9), while every quantity still carries noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from demo.timefmt import DAY_S
from demo.types import Persona
from demo.vocabulary import HOURLY_TRAFFIC


@dataclass(frozen=True, slots=True)
class PersonaBehaviour:
    """Generation parameters of one persona.

    Sessions per user are log-normal around ``sessions_median`` clipped to ``sessions_range``;
    the last session lies ``recency_days`` (uniform range) before the window end; views per
    session are ``views_base + Poisson(views_extra)``; probabilities are per view (click,
    cart) or per session (search, convert, offline); ``gap_s`` is the median seconds between
    two product views.
    """

    sessions_median: float
    sessions_sigma: float
    sessions_range: tuple[int, int]
    recency_days: tuple[float, float]
    views_base: int
    views_extra: float
    p_search: float
    p_click: float
    p_cart: float
    p_convert: float
    min_converting: int
    max_basket: int
    p_remove: float
    p_offline: float
    gap_s: float


BEHAVIOUR: Mapping[Persona, PersonaBehaviour] = {
    Persona.HIGH_VALUE_LOYALIST: PersonaBehaviour(
        sessions_median=22, sessions_sigma=0.22, sessions_range=(12, 50),
        recency_days=(0.0, 3.0), views_base=3, views_extra=3.0,
        p_search=0.3, p_click=0.45, p_cart=0.10, p_convert=0.55, min_converting=6,
        max_basket=3, p_remove=0.12, p_offline=0.08, gap_s=40.0,
    ),
    Persona.BROWSING_ENTHUSIAST: PersonaBehaviour(
        sessions_median=12, sessions_sigma=0.25, sessions_range=(7, 30),
        recency_days=(0.0, 10.0), views_base=6, views_extra=4.5,
        p_search=0.55, p_click=0.35, p_cart=0.03, p_convert=0.012, min_converting=0,
        max_basket=1, p_remove=0.35, p_offline=0.0, gap_s=75.0,
    ),
    Persona.OCCASIONAL_BUYER: PersonaBehaviour(
        sessions_median=5, sessions_sigma=0.25, sessions_range=(3, 9),
        recency_days=(12.0, 50.0), views_base=2, views_extra=2.5,
        p_search=0.3, p_click=0.4, p_cart=0.08, p_convert=0.5, min_converting=1,
        max_basket=2, p_remove=0.1, p_offline=0.1, gap_s=40.0,
    ),
    Persona.NEW_VISITOR: PersonaBehaviour(
        sessions_median=1.3, sessions_sigma=0.3, sessions_range=(1, 2),
        recency_days=(0.0, 10.0), views_base=1, views_extra=2.0,
        p_search=0.2, p_click=0.3, p_cart=0.04, p_convert=0.0, min_converting=0,
        max_basket=1, p_remove=0.3, p_offline=0.0, gap_s=45.0,
    ),
}  # fmt: skip

REFERENCE_WINDOW_DAYS = 90
_HOURLY = np.asarray(HOURLY_TRAFFIC) / sum(HOURLY_TRAFFIC)


def session_count(rng: np.random.Generator, behaviour: PersonaBehaviour) -> int:
    """Number of online sessions one user of this persona has in the window."""
    lo, hi = behaviour.sessions_range
    raw = rng.lognormal(np.log(behaviour.sessions_median), behaviour.sessions_sigma)
    return int(np.clip(round(float(raw)), lo, hi))


def session_starts(
    rng: np.random.Generator,
    n: int,
    behaviour: PersonaBehaviour,
    window_start_s: int,
    end_s: int,
    arrival_s: int | None,
) -> np.ndarray:
    """Sorted start times (epoch s) of ``n`` sessions: one at the persona's recency, the
    rest spread over the window before it (or after ``arrival_s`` for new visitors), with
    the hour of day following the shop's daily traffic curve."""
    if arrival_s is not None:
        first = arrival_s
        last = arrival_s + rng.random() * max(0, end_s - 3600 - arrival_s)
        starts = np.asarray([first, last][:n], dtype=np.float64)
    else:
        # Recency ranges are tuned for the default 90-day window; shorter windows shrink them.
        scale = min(1.0, (end_s - window_start_s) / (REFERENCE_WINDOW_DAYS * DAY_S))
        lo, hi = behaviour.recency_days
        last = max(end_s - rng.uniform(lo, hi) * scale * DAY_S - 1800, window_start_s + 3600)
        others = rng.uniform(window_start_s, last, size=n - 1)
        starts = np.concatenate([others, [last]])
        # Re-draw the hour of day for realism, staying on the same day and inside the window.
        days = np.floor(starts / DAY_S) * DAY_S
        hours = rng.choice(24, size=n, p=_HOURLY)
        moved = days + hours * 3600 + rng.random(n) * 3600
        ok = (moved >= window_start_s) & (moved <= last)
        starts = np.where(ok, moved, starts)
    return np.sort(starts.astype(np.int64))

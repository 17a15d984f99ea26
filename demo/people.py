"""Demo users: planted personas, hidden tastes and the public traits written to ``users.jsonl``.

Taste (gender line, 1-3 categories, 1-2 styles, a price band) is what gives the events a
structure that collaborative filtering and content similarity can learn; the persona decides
how much and how someone shops. Neither is written to the users file except the categories a
user *declared* (``preferred_categories``), which most — not all — users filled in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from demo.catalog import allocate
from demo.draws import cdf_of, draw_index
from demo.timefmt import DAY_S, iso_date
from demo.types import DemoUser, Persona
from demo.vocabulary import AGE_BANDS, CATEGORIES, COUNTRIES, FIRST_NAMES, LAST_NAMES, STYLES

PERSONA_SHARES: Mapping[Persona, float] = {
    Persona.HIGH_VALUE_LOYALIST: 0.15,
    Persona.BROWSING_ENTHUSIAST: 0.30,
    Persona.OCCASIONAL_BUYER: 0.30,
    Persona.NEW_VISITOR: 0.25,
}

# Loyalty tier follows spend, so it correlates with the persona — but only loosely.
_TIERS = ("gold", "silver", "bronze", "none")
_TIER_P: Mapping[Persona, tuple[float, float, float, float]] = {
    Persona.HIGH_VALUE_LOYALIST: (0.60, 0.32, 0.06, 0.02),
    Persona.BROWSING_ENTHUSIAST: (0.02, 0.15, 0.43, 0.40),
    Persona.OCCASIONAL_BUYER: (0.03, 0.17, 0.50, 0.30),
    Persona.NEW_VISITOR: (0.0, 0.0, 0.05, 0.95),
}
# Centre and spread of the preferred log(price / category median).
_PRICE_BAND: Mapping[Persona, tuple[float, float]] = {
    Persona.HIGH_VALUE_LOYALIST: (0.30, 0.20),
    Persona.BROWSING_ENTHUSIAST: (0.00, 0.30),
    Persona.OCCASIONAL_BUYER: (-0.10, 0.25),
    Persona.NEW_VISITOR: (0.00, 0.30),
}
NO_PERSONALIZATION_SHARE = 0.03
UNDECLARED_PREFERENCES_SHARE = 0.10
NEW_VISITOR_DAYS = 10


def _pick(rng: np.random.Generator, table: tuple[tuple[str, float], ...]) -> str:
    return table[draw_index(rng, cdf_of([w for _, w in table]))][0]


def _taste(rng: np.random.Generator) -> tuple[str, tuple[int, ...], tuple[str, ...]]:
    gender = "women" if rng.random() < 0.58 else "men"
    fit = np.asarray(
        [c.weight * (c.genders[gender] + 0.5 * c.genders["unisex"]) for c in CATEGORIES]
    )
    k = int(rng.choice(3, p=[0.30, 0.45, 0.25])) + 1
    categories = tuple(
        int(c) for c in rng.choice(len(CATEGORIES), size=k, replace=False, p=fit / fit.sum())
    )
    # Styles the chosen categories actually carry are far more likely to be someone's taste.
    style_w = np.asarray(
        [0.2 + sum(s in CATEGORIES[c].styles for c in categories) for s in STYLES], dtype=float
    )
    n_styles = 1 if rng.random() < 0.5 else 2
    styles = tuple(
        STYLES[int(s)]
        for s in rng.choice(len(STYLES), size=n_styles, replace=False, p=style_w / style_w.sum())
    )
    return gender, categories, styles


def generate_users(
    rng: np.random.Generator, n_users: int, window_start_s: int, end_s: int
) -> list[DemoUser]:
    """Build ``n_users`` users (ids ``u00001``..) with exact persona proportions.

    New visitors' ``signup_date`` is provisional (their arrival day); the world sets it to
    the day of their first session once sessions are placed.
    """
    personas = list(PERSONA_SHARES)
    counts = allocate(n_users, np.asarray(list(PERSONA_SHARES.values())))
    persona_of = np.repeat(np.arange(len(personas)), counts)[rng.permutation(n_users)]

    users: list[DemoUser] = []
    for index in range(n_users):
        persona = personas[int(persona_of[index])]
        gender, categories, styles = _taste(rng)
        centre, spread = _PRICE_BAND[persona]
        price_band = float(rng.normal(centre, spread))
        newsletter = bool(rng.random() < (0.75 if persona is Persona.HIGH_VALUE_LOYALIST else 0.5))
        country = _pick(rng, COUNTRIES)
        first = FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]
        last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]
        user_id = f"u{index + 1:05d}"
        if persona is Persona.NEW_VISITOR:
            # Leave two hours so a short session still fits before the window ends.
            arrival = end_s - int(rng.integers(2 * 3600, NEW_VISITOR_DAYS * DAY_S))
            arrival_s: int | None = arrival
            signup_s = arrival
        else:
            arrival_s = None
            signup_s = window_start_s - int(rng.integers(30 * DAY_S, 1500 * DAY_S))
        declared = (
            []
            if rng.random() < UNDECLARED_PREFERENCES_SHARE
            else [CATEGORIES[c].name for c in categories]
        )
        local = f"{first}.{last}".lower().replace(" ", "")
        record: dict[str, object] = {
            "id": user_id,
            "traits": {
                "email": f"{local}{index + 1}@example.com",
                "first_name": first,
                "country": country,
                "age_band": _pick(rng, AGE_BANDS),
                "loyalty_tier": _TIERS[draw_index(rng, cdf_of(_TIER_P[persona]))],
                "signup_date": iso_date(signup_s),
                "preferred_categories": declared,
                "newsletter": newsletter,
            },
            "consent": {
                "personalization": bool(rng.random() >= NO_PERSONALIZATION_SHARE),
                "tracking": True,
            },
        }
        users.append(
            DemoUser(
                index=index,
                id=user_id,
                persona=persona,
                gender=gender,
                categories=categories,
                styles=styles,
                price_band=price_band,
                mobile_share=float(rng.beta(2.0, 2.0)),
                newsletter=newsletter,
                country=country,
                arrival_s=arrival_s,
                record=record,
            )
        )
    return users

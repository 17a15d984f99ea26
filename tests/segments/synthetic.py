"""Synthetic users drawn from four planted personas, for tests, benchmarks and demos.

The personas mirror the ones a demo world contains: high-value loyalists, browsing enthusiasts,
occasional buyers, new visitors. `drift` scales every behavioural rate by (1 + drift) so retrain
tests can ask "is this still the same cluster?".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from segments.features import FeatureRow, FloatArray
from segments.types import FEATURE_NAMES

PERSONAS: tuple[str, ...] = (
    "High-value loyalists",
    "Browsing enthusiasts",
    "Occasional buyers",
    "New visitors",
)

# Per persona: mean sessions (30 d), views per session, mean purchases, order value ($),
# mean days since last visit, mean session duration (s), categories touched.
_PARAMS: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "High-value loyalists": (14.0, 6.0, 12.0, 140.0, 2.0, 420.0, 5.0),
    "Browsing enthusiasts": (30.0, 12.0, 0.3, 35.0, 1.5, 950.0, 9.0),
    "Occasional buyers": (3.0, 4.0, 2.0, 55.0, 25.0, 240.0, 2.0),
    "New visitors": (1.2, 2.5, 0.0, 0.0, 1.0, 90.0, 1.0),
}

CATEGORIES: tuple[str, ...] = ("shoes", "books", "electronics", "garden", "toys", "beauty")


def synthetic_matrix(
    n: int,
    seed: int = 0,
    *,
    drift: float = 0.0,
    weights: Sequence[float] = (0.2, 0.25, 0.3, 0.25),
) -> tuple[FloatArray, NDArray[np.int64]]:
    """`(X, persona)`: X (n, len(FEATURE_NAMES)) in raw units, persona (n,) indexes `PERSONAS`."""
    rng = np.random.default_rng(seed)
    w = np.asarray(weights, dtype=np.float64)
    persona = rng.choice(len(PERSONAS), size=n, p=w / w.sum()).astype(np.int64)
    params = np.array([_PARAMS[p] for p in PERSONAS])[persona]
    grow = 1.0 + drift
    sess_mu, vps_mu, buy_mu, aov_mu, rec_mu, dur_mu, cat_mu = (params[:, i] for i in range(7))

    sessions = 1 + rng.poisson(np.maximum(sess_mu * grow - 1, 0.05))
    views_30d = rng.poisson(sessions * vps_mu * grow) + sessions
    views_7d = rng.binomial(views_30d, 0.3)
    clicks_30d = rng.binomial(views_30d, 0.4)
    clicks_7d = rng.binomial(clicks_30d, 0.3)
    # Occasional buyers are buyers by definition: at least one order.
    floor = (buy_mu > 1) & (buy_mu < 5)
    frequency = (floor + rng.poisson(np.maximum(buy_mu * grow - floor, 0.0))).astype(np.float64)
    # A purchase needs a session: at most one a session in the 30-day window.
    purchases_30d = np.minimum(rng.binomial(frequency.astype(np.int64), 0.5), sessions)
    purchases_30d = purchases_30d.astype(np.float64)
    purchases_7d = rng.binomial(purchases_30d.astype(np.int64), 0.3).astype(np.float64)
    atc_rate = np.where(buy_mu > 1, 0.12, 0.03) * rng.uniform(0.7, 1.3, n)
    add_to_cart_30d = np.maximum(rng.binomial(views_30d, np.minimum(atc_rate, 1)), purchases_30d)
    add_to_cart_7d = rng.binomial(add_to_cart_30d.astype(np.int64), 0.3)
    aov = np.where(frequency > 0, aov_mu * grow * rng.lognormal(0.0, 0.25, n), 0.0)
    monetary = frequency * aov
    recency = rng.exponential(rec_mu / grow)
    never = frequency == 0
    last_purchase = np.where(never, 365.0, recency + rng.exponential(np.maximum(rec_mu, 3) * 3))
    duration = dur_mu * grow * rng.lognormal(0.0, 0.3, n)
    diversity = 1 + rng.poisson(np.maximum(cat_mu - 1, 0.01))
    engagement = views_30d + 2 * clicks_30d + 5 * add_to_cart_30d + 10 * purchases_30d

    columns = {
        "recency_days": recency,
        "frequency": frequency,
        "monetary": monetary,
        "avg_order_value": aov,
        "sessions": sessions,
        "views_7d": views_7d,
        "views_30d": views_30d,
        "clicks_7d": clicks_7d,
        "clicks_30d": clicks_30d,
        "add_to_cart_7d": add_to_cart_7d,
        "add_to_cart_30d": add_to_cart_30d,
        "purchases_7d": purchases_7d,
        "purchases_30d": purchases_30d,
        "views_per_session": views_30d / sessions,
        "avg_session_duration_s": duration,
        "add_to_cart_rate": add_to_cart_30d / np.maximum(views_30d, 1),
        "conversion_rate": purchases_30d / sessions,
        "engagement_score": engagement,
        "category_diversity": diversity,
        "days_since_last_purchase": last_purchase,
    }
    x = np.stack([np.asarray(columns[name], dtype=np.float64) for name in FEATURE_NAMES], axis=1)
    return x, persona


def synthetic_rows(
    n: int,
    seed: int = 0,
    *,
    drift: float = 0.0,
    weights: Sequence[float] = (0.2, 0.25, 0.3, 0.25),
) -> tuple[list[FeatureRow], list[str]]:
    """`(rows, persona_names)`: rows are `(user_id, features)` as profiles expose them."""
    x, persona = synthetic_matrix(n, seed, drift=drift, weights=weights)
    rows: list[FeatureRow] = [
        (f"u{i}", dict(zip(FEATURE_NAMES, map(float, x[i]), strict=True))) for i in range(n)
    ]
    return rows, [PERSONAS[p] for p in persona]


def synthetic_top_categories(n: int, seed: int = 0) -> list[list[str]]:
    """Random `top_categories` lists (1-3 categories each) to exercise rule segments."""
    rng = np.random.default_rng(seed)
    return [
        [CATEGORIES[j] for j in rng.choice(len(CATEGORIES), size=rng.integers(1, 4), replace=False)]
        for _ in range(n)
    ]

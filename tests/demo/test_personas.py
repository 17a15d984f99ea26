"""Planted personas: exact proportions and behaviour a segmentation can recover."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from tests.demo.conftest import END, LoadedWorld
from tests.demo.features import FEATURES, user_features

SHARES = {
    "high_value_loyalist": 0.15,
    "browsing_enthusiast": 0.30,
    "occasional_buyer": 0.30,
    "new_visitor": 0.25,
}


def _by_persona(world: LoadedWorld) -> dict[str, np.ndarray]:
    user_ids = list(world.personas)
    matrix = user_features(world.events, user_ids, END)
    labels = np.asarray([world.personas[u] for u in user_ids])
    return {p: matrix[labels == p] for p in SHARES}


def _mean(rows: np.ndarray, feature: str) -> float:
    return float(rows[:, FEATURES.index(feature)].mean())


def test_persona_proportions_are_exact_to_one_user(world: LoadedWorld) -> None:
    counts = {p: list(world.personas.values()).count(p) for p in SHARES}
    for persona, share in SHARES.items():
        assert abs(counts[persona] - share * 400) <= 1, counts


def test_behaviour_separates_personas(world: LoadedWorld) -> None:
    f = _by_persona(world)
    loyal, browse = f["high_value_loyalist"], f["browsing_enthusiast"]
    occasional, new = f["occasional_buyer"], f["new_visitor"]
    # Loyalists buy far more and spend far more than anyone.
    assert _mean(loyal, "purchases") > 3 * _mean(occasional, "purchases")
    assert _mean(loyal, "monetary") > 3 * _mean(occasional, "monetary")
    assert _mean(loyal, "purchases") > 20 * max(_mean(browse, "purchases"), 0.1)
    assert _mean(new, "purchases") == 0.0
    # Browsers: many sessions, most views, the longest sessions, hardly any conversion.
    assert _mean(browse, "views") > 4 * _mean(occasional, "views")
    assert _mean(browse, "events_per_session") > _mean(loyal, "events_per_session")
    assert _mean(browse, "conversion") < 0.2 * _mean(occasional, "conversion")
    assert _mean(browse, "sessions") > 2 * _mean(occasional, "sessions")
    # Recency: loyalists most recent, occasional buyers least.
    assert _mean(loyal, "recency_days") < _mean(browse, "recency_days")
    assert _mean(occasional, "recency_days") > 2 * _mean(browse, "recency_days")
    # New visitors: one or two sessions, all within the last ten days.
    assert set(new[:, FEATURES.index("sessions")]) <= {1.0, 2.0}
    assert new[:, FEATURES.index("recency_days")].max() < 10.0
    # Occasional buyers all bought something.
    assert occasional[:, FEATURES.index("purchases")].min() >= 1


def test_users_of_one_persona_still_vary(world: LoadedWorld) -> None:
    for persona, rows in _by_persona(world).items():
        if persona != "new_visitor":
            for feature in ("sessions", "views", "events_per_session"):
                column = rows[:, FEATURES.index(feature)]
                assert column.std() > 0.05 * column.mean(), (persona, feature)


def test_kmeans_on_behaviour_recovers_personas(world: LoadedWorld) -> None:
    user_ids = list(world.personas)
    matrix = user_features(world.events, user_ids, END)
    scaled = StandardScaler().fit_transform(np.log1p(matrix))
    predicted = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(scaled)
    truth = [world.personas[u] for u in user_ids]
    assert adjusted_rand_score(truth, predicted) >= 0.9


def test_new_visitors_signed_up_recently(world: LoadedWorld) -> None:
    cutoff = (END - timedelta(days=11)).date().isoformat()
    for user in world.users:
        if world.personas[user["id"]] == "new_visitor":
            assert user["traits"]["signup_date"] >= cutoff
            assert user["traits"]["loyalty_tier"] in {"none", "bronze"}
        else:
            assert user["traits"]["signup_date"] < world.summary.start.date().isoformat()

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from segments import (
    UNCLUSTERED_ID,
    SegmentingConfig,
    feature_matrix,
    train_segments,
    train_segments_matrix,
)
from segments.features import FeatureRow
from segments.fit import knee_eps
from tests.segments.synthetic import synthetic_matrix

Personas = tuple[list[FeatureRow], list[str]]


def _outliers() -> list[FeatureRow]:
    """Eight users each extreme along a different feature: far from everyone and each other."""
    extremes = [
        "sessions",
        "views_30d",
        "monetary",
        "avg_session_duration_s",
        "category_diversity",
        "clicks_30d",
        "avg_order_value",
        "views_per_session",
    ]
    return [(f"o{i}", {name: 1e6}) for i, name in enumerate(extremes)]


def test_dbscan_noise_becomes_an_unclustered_segment(personas: Personas) -> None:
    rows, _ = personas
    outliers = _outliers()
    config = SegmentingConfig(algorithm="dbscan", dbscan_min_samples=10)
    model = train_segments(rows[:1_500] + outliers, config)
    assert model.metrics.eps is not None and model.metrics.eps > 0
    unclustered = model.segment(UNCLUSTERED_ID)
    assert unclustered.name == "Unclustered" and unclustered.size >= len(outliers)
    assert 0 < model.metrics.noise_fraction < 0.1  # type: ignore[operator]
    assert all(model.assign(f) == UNCLUSTERED_ID for _, f in outliers)
    assert model.k >= 2
    _, x = feature_matrix(rows[:200] + outliers, config.features)
    assert list(model.assign_many(x)) == [model.assign(f) for _, f in rows[:200] + outliers]
    # A typical user sits inside a dense region.
    inside = [model.assign(f) for _, f in rows[:200]]
    assert sum(s != UNCLUSTERED_ID for s in inside) >= 180


def test_knee_of_the_k_distance_curve_separates_dense_from_sparse() -> None:
    rng = np.random.default_rng(1)
    dense = rng.normal(0.0, 0.1, size=(500, 2))
    sparse = rng.uniform(-20, 20, size=(25, 2))
    eps = knee_eps(np.vstack([dense, sparse]), min_samples=5)
    # Above the typical within-blob k-distance, far below the spacing of the sparse points.
    assert 0.05 < eps < 2.0


def test_ward_fits_a_sample_and_assigns_the_rest() -> None:
    x, truth = synthetic_matrix(3_000, seed=4)
    config = SegmentingConfig(algorithm="ward", ward_sample_size=600)
    model = train_segments_matrix(x, config)
    assert model.metrics.algorithm == "ward"
    assert model.metrics.fit_sample_size == 600
    assert sum(s.size for s in model.segments) == 3_000
    labels = model.assign_many(x)
    assert adjusted_rand_score(truth, list(labels)) >= 0.9
    assert len(model.metrics.inertia_by_k) == len(model.metrics.silhouette_by_k) == 7


def test_minibatch_kicks_in_above_the_threshold() -> None:
    x, truth = synthetic_matrix(3_000, seed=5)
    config = SegmentingConfig(minibatch_threshold=1_000, k_min=3, k_max=4)
    model = train_segments_matrix(x, config)
    assert model.metrics.algorithm == "minibatch"
    again = train_segments_matrix(x, config)
    np.testing.assert_array_equal(model.centroids, again.centroids)  # deterministic per seed
    assert adjusted_rand_score(truth, list(model.assign_many(x))) >= 0.9

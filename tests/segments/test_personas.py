from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from segments import (
    SegmentError,
    SegmentingConfig,
    SegmentKind,
    SegmentModel,
    feature_matrix,
    train_segments,
)
from segments.features import FeatureRow
from tests.segments.synthetic import PERSONAS

Personas = tuple[list[FeatureRow], list[str]]


def test_kmeans_recovers_planted_personas(kmeans_model: SegmentModel, personas: Personas) -> None:
    rows, truth = personas
    assigned = [kmeans_model.assign(features) for _, features in rows]
    assert kmeans_model.metrics.chosen_k == 4
    assert adjusted_rand_score(truth, assigned) >= 0.9


def test_names_match_personas(kmeans_model: SegmentModel, personas: Personas) -> None:
    rows, truth = personas
    assigned = [kmeans_model.assign(features) for _, features in rows]
    right = 0
    for seg in kmeans_model.segments:
        majority, _ = Counter(
            t for t, a in zip(truth, assigned, strict=True) if a == seg.id
        ).most_common(1)[0]
        right += seg.name == majority
    assert right >= 3
    assert {seg.name for seg in kmeans_model.segments} <= set(PERSONAS) | {
        s.name for s in kmeans_model.segments
    }
    loyal = next(s for s in kmeans_model.segments if s.name == "High-value loyalists")
    assert loyal.description.startswith("Frequent purchases, high order value")
    assert loyal.kind is SegmentKind.CLUSTER


def test_traits_are_sorted_standouts_with_raw_values(kmeans_model: SegmentModel) -> None:
    new = next(s for s in kmeans_model.segments if s.name == "New visitors")
    traits = {t.name: t for t in new.traits}
    assert traits["frequency"].value < 0.1  # a few occasional buyers without orders land here
    assert traits["sessions"].z_score < -0.5
    z = [abs(t.z_score) for t in new.traits]
    assert z == sorted(z, reverse=True)
    assert sum(s.size for s in kmeans_model.segments) == kmeans_model.n_users == 2_000


def test_assign_many_matches_assign_and_missing_features_read_zero(
    kmeans_model: SegmentModel, personas: Personas
) -> None:
    rows, _ = personas
    _, x = feature_matrix(rows, kmeans_model.config.features)
    batch = kmeans_model.assign_many(x)
    assert list(batch) == [kmeans_model.assign(f) for _, f in rows]
    # A profile exposing only some keys is read with zeros for the rest, on both paths.
    partial = {"sessions": 1.0, "views_30d": 2.0, "recency_days": 0.5}
    _, x1 = feature_matrix([("u", partial)], kmeans_model.config.features)
    assert kmeans_model.assign(partial) == kmeans_model.assign_many(x1)[0]
    assert kmeans_model.segment(kmeans_model.assign(partial)).name == "New visitors"


def test_training_is_deterministic_for_a_seed(personas: Personas) -> None:
    rows, _ = personas
    config = SegmentingConfig(k_min=3, k_max=5, random_seed=3)
    a, b = train_segments(rows[:800], config), train_segments(rows[:800], config)
    assert a.segment_ids == b.segment_ids
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.metrics.silhouette_by_k == b.metrics.silhouette_by_k


def test_metrics_report_silhouette_and_elbow_per_k(kmeans_model: SegmentModel) -> None:
    m = kmeans_model.metrics
    assert sorted(m.silhouette_by_k) == list(range(2, 9)) == sorted(m.inertia_by_k)
    assert max(m.silhouette_by_k, key=m.silhouette_by_k.__getitem__) == m.chosen_k
    inertia = [m.inertia_by_k[k] for k in sorted(m.inertia_by_k)]
    assert inertia[0] > inertia[2] > inertia[-1]  # the elbow curve falls with k


def test_pca_and_standard_scaler_config(personas: Personas) -> None:
    rows, truth = personas
    config = SegmentingConfig(scaler="standard", pca_components=6, k_min=3, k_max=5)
    model = train_segments(rows, config)
    assert model.centroids.shape == (model.k, 6)
    _, x = feature_matrix(rows, config.features)
    assigned = model.assign_many(x)
    assert list(assigned[:50]) == [model.assign(f) for _, f in rows[:50]]
    assert adjusted_rand_score(truth, list(assigned)) >= 0.9


def test_non_finite_features_are_rejected(kmeans_model: SegmentModel) -> None:
    with pytest.raises(SegmentError):
        kmeans_model.assign({"sessions": float("nan")})
    with pytest.raises(SegmentError):
        feature_matrix([("u", {"monetary": float("inf")})], kmeans_model.config.features)

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segments import (
    ModelNotFound,
    SegmentingConfig,
    SegmentModel,
    SegmentModelStore,
    SegmentsFile,
    feature_matrix,
    train_segments,
)
from segments.features import FeatureRow
from segments.segments_file import parse_segments_data

Personas = tuple[list[FeatureRow], list[str]]


def test_round_trip_preserves_assignments_and_metadata(
    tmp_path: Path, kmeans_model: SegmentModel, personas: Personas
) -> None:
    rows, _ = personas
    store = SegmentModelStore(tmp_path / "segments")
    with pytest.raises(ModelNotFound):
        store.latest()
    file = parse_segments_data(
        {
            "rule": [
                {"id": "shoe-fans", "name": "Shoe fans", "expression": '"shoes" in top_categories'}
            ]
        }
    )
    version = store.write(kmeans_model.with_segments_file(file))
    assert version == "v000001"
    loaded = store.latest()
    assert loaded.version == version
    assert loaded.segments == kmeans_model.segments
    assert loaded.metrics == kmeans_model.metrics
    assert loaded.built_at == kmeans_model.built_at
    assert loaded.config == kmeans_model.config
    _, x = feature_matrix(rows, kmeans_model.config.features)
    np.testing.assert_array_equal(loaded.assign_many(x), kmeans_model.assign_many(x))
    assert loaded.rule_segments({}, ["shoes"]) == ["shoe-fans"]

    manifest = json.loads((tmp_path / "segments" / version / "manifest.json").read_text())
    assert manifest["version"] == version
    assert manifest["algorithm"] == "kmeans" and manifest["k"] == 4
    assert manifest["n_users"] == 2_000
    assert manifest["built_at"].endswith("+00:00")


def test_versions_increase_and_nothing_half_written_is_visible(
    tmp_path: Path, personas: Personas
) -> None:
    rows, _ = personas
    store = SegmentModelStore(tmp_path)
    model = train_segments(rows[:300], SegmentingConfig(k_min=2, k_max=3))
    assert [store.write(model) for _ in range(3)] == ["v000001", "v000002", "v000003"]
    assert store.versions() == ["v000001", "v000002", "v000003"]
    assert store.latest().version == "v000003"
    assert store.load("v000002").segment_ids == model.segment_ids
    # No temporary directories are left behind; a crashed writer's leftover is ignored.
    assert sorted(p.name for p in tmp_path.iterdir()) == store.versions()
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / "v000009").mkdir()  # no manifest: incomplete, not a version
    assert store.latest().version == "v000003"
    for bad in ("v000009", "v000004", "../v000001", "latest"):
        with pytest.raises(ModelNotFound):
            store.load(bad)


def test_dbscan_model_round_trips_core_points(tmp_path: Path, personas: Personas) -> None:
    rows, _ = personas
    model = train_segments(rows[:600], SegmentingConfig(algorithm="dbscan"))
    store = SegmentModelStore(tmp_path)
    loaded = store.load(store.write(model))
    assert loaded.eps == model.eps
    assert loaded.core_points is not None and model.core_points is not None
    np.testing.assert_array_equal(loaded.core_points, model.core_points)
    _, x = feature_matrix(rows, model.config.features)
    np.testing.assert_array_equal(loaded.assign_many(x), model.assign_many(x))


def test_empty_segments_file_keeps_the_model(kmeans_model: SegmentModel) -> None:
    same = kmeans_model.with_segments_file(SegmentsFile())
    assert same.segments == kmeans_model.segments and same.rules == []


def test_concurrent_writers_get_distinct_versions(tmp_path: Path, personas: Personas) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rows, _ = personas
    model = train_segments(rows[:300], SegmentingConfig(k_min=2, k_max=2))
    store = SegmentModelStore(tmp_path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(lambda _: store.write(model), range(8)))
    assert sorted(versions) == store.versions() == [f"v{i:06d}" for i in range(1, 9)]
    assert all(store.load(v).segment_ids == model.segment_ids for v in versions)

from __future__ import annotations

import pytest

from segments import SegmentingConfig, SegmentModel, train_segments
from segments.features import FeatureRow
from tests.segments.synthetic import synthetic_rows


@pytest.fixture(scope="session")
def personas() -> tuple[list[FeatureRow], list[str]]:
    """2,000 users from the four planted personas."""
    return synthetic_rows(2_000, seed=1)


@pytest.fixture(scope="session")
def kmeans_model(personas: tuple[list[FeatureRow], list[str]]) -> SegmentModel:
    rows, _ = personas
    return train_segments(rows, SegmentingConfig(random_seed=7))

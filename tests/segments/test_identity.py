from __future__ import annotations

from collections import Counter

import numpy as np

from segments import SegmentingConfig, SegmentModel, train_segments
from segments.features import FeatureRow
from segments.identity import match_ids
from tests.segments.synthetic import PERSONAS, synthetic_rows

Personas = tuple[list[FeatureRow], list[str]]


def _persona_of_segment(
    model: SegmentModel, rows: list[FeatureRow], truth: list[str]
) -> dict[str, str]:
    assigned = [model.assign(f) for _, f in rows]
    return {
        seg_id: Counter(t for t, a in zip(truth, assigned, strict=True) if a == seg_id).most_common(
            1
        )[0][0]
        for seg_id in model.segment_ids
    }


def test_retrain_on_drifted_data_keeps_ids_and_names(
    kmeans_model: SegmentModel, personas: Personas
) -> None:
    rows, truth = personas
    # New users, 10 % more active across the board, different persona mix.
    drifted, drifted_truth = synthetic_rows(
        2_000, seed=2, drift=0.1, weights=(0.25, 0.2, 0.3, 0.25)
    )
    retrained = train_segments(drifted, SegmentingConfig(random_seed=99), previous=kmeans_model)
    assert sorted(retrained.segment_ids) == sorted(kmeans_model.segment_ids)
    before = _persona_of_segment(kmeans_model, rows, truth)
    after = _persona_of_segment(retrained, drifted, drifted_truth)
    assert before == after  # same id -> same persona
    names_before = {s.id: s.name for s in kmeans_model.segments}
    assert {s.id: s.name for s in retrained.segments} == names_before
    assert retrained.next_id == kmeans_model.next_id  # no id was consumed


def test_a_new_behaviour_gets_a_fresh_id(kmeans_model: SegmentModel, personas: Personas) -> None:
    rows, _ = personas
    # Drop the loyalists and add a persona never seen before: heavy buyers of huge orders
    # who never browse (e.g. B2B reorders).
    keep = [r for r, t in zip(rows, personas[1], strict=True) if t != PERSONAS[0]]
    b2b = [
        (
            f"b{i}",
            {
                "frequency": 40.0 + i % 7,
                "monetary": 40_000.0 + 100 * i,
                "avg_order_value": 1_000.0 + i,
                "sessions": 40.0,
                "views_30d": 40.0,
                "views_per_session": 1.0,
                "conversion_rate": 1.0,
                "purchases_30d": 40.0,
                "days_since_last_purchase": 1.0,
                "recency_days": 1.0,
            },
        )
        for i in range(400)
    ]
    config = SegmentingConfig(k_min=4, k_max=4, random_seed=5)
    retrained = train_segments(keep + b2b, config, previous=kmeans_model)
    old = set(kmeans_model.segment_ids)
    fresh = [i for i in retrained.segment_ids if i not in old]
    assert len(fresh) == 1
    assert fresh[0] == f"c{kmeans_model.next_id}"
    assert retrained.assign(b2b[0][1]) == fresh[0]
    loyal_id = next(s.id for s in kmeans_model.segments if s.name == PERSONAS[0])
    assert loyal_id not in retrained.segment_ids  # that cluster is gone, its id is not reused


def test_match_ids_respects_threshold_and_is_one_to_one() -> None:
    distances = np.array([[0.1, 0.2, 5.0], [0.15, 3.0, 4.0]])
    # Hungarian minimises the total: a->col1 (0.2) + b->col0 (0.15), column 2 is too far.
    assert match_ids(["a", "b"], distances, threshold=1.0) == ["b", "a", None]
    assert match_ids(["a", "b"], distances, threshold=0.18) == ["b", None, None]

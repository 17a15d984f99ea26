from __future__ import annotations

import numpy as np
import pytest

from recommend.blend import blend, blend_batch, blend_scores, normalize_scores


def test_rank_normalization_ignores_magnitudes() -> None:
    np.testing.assert_allclose(
        normalize_scores(np.array([1000.0, 2.0, 1.0, 0.5])), [1, 0.75, 0.5, 0.25]
    )
    # ties share the better rank
    np.testing.assert_allclose(normalize_scores(np.array([3.0, 3.0, 1.0])), [1.0, 1.0, 1 / 3])


def test_minmax_normalization_keeps_gaps() -> None:
    np.testing.assert_allclose(
        normalize_scores(np.array([10.0, 7.5, 0.0]), "minmax"), [1.0, 0.75, 0.0]
    )
    np.testing.assert_allclose(normalize_scores(np.array([2.0, 2.0]), "minmax"), [1.0, 1.0])
    with pytest.raises(ValueError):
        normalize_scores(np.array([1.0]), "zscore")  # type: ignore[arg-type]


def test_padding_normalizes_to_zero_in_batches() -> None:
    scores = np.array([[5.0, 1.0, -np.inf], [2.0, -np.inf, -np.inf]])
    np.testing.assert_allclose(normalize_scores(scores), [[1.0, 0.5, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        normalize_scores(scores, "minmax"), [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    )


def test_weighted_blend_and_top_source() -> None:
    candidates = {
        "cf": (["a", "b", "c"], np.array([9.0, 5.0, 1.0])),
        "content": (["c", "d"], np.array([0.9, 0.1])),
    }
    # cf rank values a=1, b=2/3, c=1/3; content c=1, d=1/2
    recs = blend(candidates, {"cf": 1.0, "content": 2.0}, k=3)
    assert [r.item_id for r in recs] == ["c", "a", "d"]
    assert recs[0].score == pytest.approx(1 / 3 + 2.0)
    assert recs[0].source == "content"
    assert recs[1].source == "cf"
    assert recs[1].reason == "recommended by cf"


def test_zero_or_missing_weight_drops_a_source() -> None:
    candidates = {"cf": (["a"], np.array([1.0])), "trending": (["t"], np.array([1.0]))}
    assert [r.item_id for r in blend(candidates, {"cf": 1.0})] == ["a"]
    assert [r.item_id for r in blend(candidates, {"cf": 0.0, "trending": 1.0})] == ["t"]


def test_reasons_come_from_the_top_source() -> None:
    recs = blend({"cf": (["a"], np.array([1.0]))}, {"cf": 1.0}, reasons={"cf": "people like you"})
    assert recs[0].reason == "people like you"


def test_batch_blend_agrees_with_single_blend() -> None:
    ids_cf = np.array([[0, 1, 2], [3, -1, -1]])
    scores_cf = np.array([[3.0, 2.0, 1.0], [1.0, -np.inf, -np.inf]], dtype=np.float32)
    ids_ct = np.array([[2, 4, -1], [0, 3, 1]])
    scores_ct = np.array([[0.9, 0.5, -np.inf], [0.7, 0.6, 0.1]], dtype=np.float32)
    weights = {"cf": 1.0, "content": 0.7}
    ids, scores = blend_batch(
        {"cf": (ids_cf, scores_cf), "content": (ids_ct, scores_ct)}, weights, 4, n_items=5
    )
    for row in range(2):
        single = blend_scores(
            {
                "cf": (ids_cf[row][ids_cf[row] >= 0].tolist(), scores_cf[row][ids_cf[row] >= 0]),
                "content": (
                    ids_ct[row][ids_ct[row] >= 0].tolist(),
                    scores_ct[row][ids_ct[row] >= 0],
                ),
            },
            weights,
        )[:4]
        assert [i for i in ids[row] if i >= 0] == [item for item, _, _ in single]
        np.testing.assert_allclose(scores[row][: len(single)], [s for _, s, _ in single], rtol=1e-6)
    # row 0 has 4 distinct candidates, row 1 has 3 → padded
    assert ids[1, 3] == -1

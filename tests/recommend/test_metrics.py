from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommend.offline.metrics import coverage, hits_matrix, novelty, ranking_metrics


def relevant(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, items] = 1.0
    return sp.csr_matrix(dense)


def test_hand_computed_values() -> None:
    # user 0: relevant {1, 5}; list [1, 2, 5] → hits at ranks 0 and 2
    # user 1: relevant {9};    list [3, 4, -1] → no hit
    # user 2: no relevant items → not averaged
    recs = np.array([[1, 2, 5], [3, 4, -1], [0, 1, 2]])
    rel = relevant([[1, 5], [9], []])
    m = ranking_metrics(recs, rel, k=3)
    assert m["users"] == 2
    assert m["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall"] == pytest.approx((1.0 + 0) / 2)
    assert m["hit_rate"] == pytest.approx(0.5)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx((dcg / idcg + 0) / 2)
    ap = (1 / 1 + 2 / 3) / 2
    assert m["map"] == pytest.approx((ap + 0) / 2)


def test_ideal_dcg_is_capped_at_k() -> None:
    # 5 relevant items, k=2, both slots hit → perfect NDCG and MAP, recall 2/5
    m = ranking_metrics(np.array([[0, 1]]), relevant([[0, 1, 2, 3, 4]]), k=2)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.4)


def test_k_truncates_wider_lists() -> None:
    m = ranking_metrics(np.array([[7, 1]]), relevant([[1]]), k=1)
    assert m["hit_rate"] == 0.0


def test_hits_matrix_ignores_padding() -> None:
    hits = hits_matrix(np.array([[-1, 2]]), relevant([[0, 2]]))
    assert hits.tolist() == [[False, True]]


def test_coverage_and_novelty() -> None:
    recs = np.array([[0, 1], [1, -1]])
    assert coverage(recs, 4) == 0.5
    counts = np.array([4, 1, 0, 0])
    # p(0) = 4/4, p(1) = 1/4 → self-information 0, 2, 2 bits over three slots
    assert novelty(recs, counts, 4) == pytest.approx(4 / 3)
    assert novelty(np.array([[2]]), counts, 4) == pytest.approx(2.0)  # unseen floored at 1

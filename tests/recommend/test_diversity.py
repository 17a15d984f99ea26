from __future__ import annotations

import numpy as np
import pytest

from recommend.diversity import mmr
from recommend.types import Recommendation

# Three near-identical action films lead on relevance; a comedy and a drama follow.
VECTORS = {
    "act1": np.array([1.0, 0.0, 0.0]),
    "act2": np.array([0.99, 0.141, 0.0]),
    "act3": np.array([0.98, 0.0, 0.199]),
    "com1": np.array([0.0, 1.0, 0.0]),
    "dra1": np.array([0.0, 0.0, 1.0]),
}
CATEGORY = {"act1": "action", "act2": "action", "act3": "action", "com1": "comedy", "dra1": "drama"}
SCORES = {"act1": 0.95, "act2": 0.9, "act3": 0.85, "com1": 0.5, "dra1": 0.4}


def candidates() -> list[Recommendation]:
    return [Recommendation(item, score, "cf", "") for item, score in SCORES.items()]


def vector_of(item_id: str) -> np.ndarray | None:
    vec = VECTORS.get(item_id)
    return None if vec is None else vec / np.linalg.norm(vec)


def ids(recs: list[Recommendation]) -> list[str]:
    return [r.item_id for r in recs]


def test_zero_diversity_keeps_relevance_order() -> None:
    shuffled = candidates()[::-1]
    assert ids(mmr(shuffled, 5, vector_of=vector_of, diversity=0.0)) == list(SCORES)


def test_full_diversity_spreads_categories() -> None:
    picked = mmr(candidates(), 3, vector_of=vector_of, diversity=1.0)
    assert picked[0].item_id == "act1"  # first pick: tie on novelty → most relevant
    assert {CATEGORY[r.item_id] for r in picked} == {"action", "comedy", "drama"}


def test_middle_diversity_trades_off() -> None:
    picked = ids(mmr(candidates(), 3, vector_of=vector_of, diversity=0.5))
    assert picked[0] == "act1"
    assert "com1" in picked


def test_category_cap() -> None:
    picked = mmr(candidates(), 4, category_of=CATEGORY.get, max_per_category=1)
    assert ids(picked) == ["act1", "com1", "dra1"]  # the cap wins over filling k
    picked = mmr(candidates(), 4, category_of=CATEGORY.get, max_per_category=2)
    assert ids(picked) == ["act1", "act2", "com1", "dra1"]


def test_items_without_vectors_and_scores_are_kept_unchanged() -> None:
    recs = [*candidates(), Recommendation("unknown", 0.7, "trending", "hot")]
    picked = mmr(recs, 6, vector_of=vector_of, diversity=0.3)
    assert len(picked) == 6
    assert {r.item_id: r.score for r in picked} == {r.item_id: r.score for r in recs}


def test_bad_diversity_rejected() -> None:
    with pytest.raises(ValueError):
        mmr(candidates(), 2, diversity=1.5)
    assert mmr([], 3) == []

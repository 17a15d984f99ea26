from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommend.blend import blend
from recommend.sources import FixedCandidateSource
from recommend.types import CandidateSource, UserContext

RECOMMEND_DIR = Path(__file__).resolve().parents[2] / "recommend"
# recommend/ is domain code: no HTTP, no GraphQL, nothing above it in the package table.
ALLOWED_THIRD_PARTY = {"numpy", "scipy", "sklearn", "implicit", "threadpoolctl"}
ALLOWED_PROJECT = {"recommend", "embeddings", "cache", "storage"}
FORBIDDEN = {"gateway", "resolvers", "starlette", "strawberry", "httpx", "uvicorn"}


def test_fixed_source_is_a_candidate_source_and_honours_exclusions() -> None:
    source = FixedCandidateSource("trending", ["a", "b", "c", "d"])
    assert isinstance(source, CandidateSource)
    user = UserContext(history=[("b", 1.0, 0.0)])
    ids, scores = source.candidates(user, 2, frozenset({"a"}))
    assert ids == ["c", "d"]
    np.testing.assert_array_equal(scores, [2.0, 1.0])
    assert source.calls == [(user, 2, frozenset({"a"}))]
    with pytest.raises(ValueError):
        FixedCandidateSource("x", ["a"], [1.0, 2.0])


def test_sources_feed_the_blend() -> None:
    user = UserContext(user_id="u1")
    sources = [FixedCandidateSource("cf", ["a", "b"]), FixedCandidateSource("trending", ["b", "t"])]
    lists = {s.name: s.candidates(user, 10, frozenset()) for s in sources}
    recs = blend(lists, {"cf": 1.0, "trending": 1.0})
    assert recs[0].item_id == "b"  # in both lists: 0.5 + 1.0


def test_user_context_sums_weights_per_item() -> None:
    user = UserContext(history=[("a", 1.0, 1.0), ("b", 5.0, 2.0), ("a", 2.0, 3.0)])
    assert user.item_weights() == {"a": 3.0, "b": 5.0}

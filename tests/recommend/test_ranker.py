"""The learned ranker: features shared by serving and training, LightGBM LambdaRank exported to
numpy trees (checked against LightGBM, saved and loaded as versions), and the engine ordering
its candidates with a loaded ranker while explanations still name the top contributing source."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from profiles.types import HistoryEvent
from recommend.blend import top_sources
from recommend.conversion_trees import TreeEnsemble
from recommend.engine import RecommendRequest
from recommend.interactions import InteractionMatrix
from recommend.ranker import Group, Ranker, RankerParams, RankerSlot, RankerStore, lightgbm_zeros
from recommend.ranker_features import (
    BLEND_COLUMN,
    FEATURES,
    ItemFacts,
    ItemStats,
    ProfileView,
    candidate_features,
)
from recommend.ranker_fit import export_trees, fit_lambdarank
from recommend.types import ArtifactError, RecommendError
from tests.recommend.test_engine import NOW, SHOE_FAN, World

MATCH = FEATURES.index("category_match")
PARAMS = RankerParams(threads=1, rounds=60, min_data_in_leaf=20, budget_s=60.0)


def planted_groups(n: int, seed: int = 0) -> list[Group]:
    """Users whose next interaction follows ``category_match``, not the blend score."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n):
        X = rng.random((30, len(FEATURES)))
        y = (X[:, MATCH] > 0.8).astype(np.float64)
        groups.append(Group(X, y))
    return groups


@pytest.fixture(scope="module")
def fitted() -> tuple[TreeEnsemble, dict[str, object]]:
    return fit_lambdarank(planted_groups(120), PARAMS)


def test_lambdarank_learns_a_signal_the_blend_misses(
    fitted: tuple[TreeEnsemble, dict[str, object]],
) -> None:
    _trees, info = fitted
    scores = info["validation_ndcg@10"]
    assert isinstance(scores, dict)
    assert scores["ranker"] > 0.9 > 0.6 > scores["blend"]
    assert info["beats_blend"] is True
    groups = planted_groups(120)
    useful = sum(
        1 for g in groups if g.y.max() > 0
    )  # a user with no later interaction teaches nothing
    assert info["groups"] == useful and info["validation_groups"] == int(useful * 0.2)


def test_the_decision_pools_every_fold_of_users() -> None:
    groups = [replace(g, user=f"u{i}") for i, g in enumerate(planted_groups(120, seed=3))]
    useful = [g for g in groups if g.y.max() > 0]
    _trees, info = fit_lambdarank(groups, PARAMS)
    # five folds of users; every user with a positive label is held out exactly once
    assert info["cv_folds"] == 5 and info["cv_users"] == len(useful)
    assert info["cv_gain_over_blend"] > 0.3 and info["beats_blend"] is True
    # When the blend already orders by what users do next, nothing beats it in any fold.
    blend = FEATURES.index("blend")
    follows_blend = [Group(g.X, (g.X[:, blend] > 0.8).astype(np.float64), g.user) for g in groups]
    _trees, info = fit_lambdarank(follows_blend, PARAMS)
    assert info["cv_users"] > 90
    assert info["cv_gain_over_blend"] <= 0.0 and info["beats_blend"] is False


def test_exported_trees_save_load_and_version(
    fitted: tuple[TreeEnsemble, dict[str, object]], tmp_path: Path
) -> None:
    trees, info = fitted
    assert trees.provenance["exported_from"].startswith("lightgbm")
    assert trees.provenance["checked_max_abs_diff"] <= 1e-9
    stats = ItemStats(("a", "b"), np.array([0.5, 1.0]), np.zeros(2), np.zeros(2))
    ranker = Ranker(trees, stats, {"cf": 1.0}, candidates=40, prior=2.0, info=info)
    store = RankerStore(tmp_path / "ranker", keep=2)
    versions = [store.write(ranker) for _ in range(3)]
    assert versions == ["v000001", "v000002", "v000003"] and store.versions() == versions[1:]
    loaded = store.load("v000003")
    X = np.random.default_rng(1).random((50, len(FEATURES)))
    assert np.array_equal(loaded.score(X), ranker.score(X))
    assert loaded.version == "v000003" and loaded.candidates == 40 and loaded.prior == 2.0
    assert loaded.stats.item_ids == ("a", "b") and dict(loaded.weights) == {"cf": 1.0}
    # The trees learned a correction on top of the prior: scores = trees + 2 x blend.
    assert np.allclose(ranker.score(X) - trees.raw(X), 2.0 * X[:, BLEND_COLUMN])
    with pytest.raises(ArtifactError, match="no ranker version"):
        store.load("v000001")


def test_an_artifact_of_other_features_is_refused(
    fitted: tuple[TreeEnsemble, dict[str, object]], tmp_path: Path
) -> None:
    import json

    stats = ItemStats((), np.zeros(0), np.zeros(0), np.zeros(0))
    store = RankerStore(tmp_path / "ranker")
    version = store.write(Ranker(fitted[0], stats, {"cf": 1.0}))
    manifest = store.root / version / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["features"] = doc["features"][:-1]
    manifest.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="other features"):
        store.load(version)


def test_export_is_checked_against_lightgbm() -> None:
    import lightgbm as lgb

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] > 0).astype(float) + (X[:, 1] > 1)
    booster = lgb.train(
        {"objective": "lambdarank", "num_leaves": 7, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(X, y, group=[20] * 20),
        num_boost_round=5,
    )
    trees = export_trees(booster, 5, X)
    assert np.allclose(trees.raw(X), booster.predict(X, raw_score=True), atol=1e-12)
    # Serving never passes NaN; a value LightGBM treats as zero splits as zero.
    tiny = np.array([[-1e-36, 0.0, 0.0, 0.0], [1e-36, 2.0, -1.0, 0.5]])
    assert np.allclose(
        trees.raw(lightgbm_zeros(tiny)), booster.predict(tiny, raw_score=True), atol=1e-12
    )


def test_too_few_users_is_a_clear_error() -> None:
    with pytest.raises(RecommendError, match="too little history to learn a ranker"):
        fit_lambdarank(planted_groups(5), PARAMS)


def test_serving_and_offline_profiles_give_the_same_features() -> None:
    rows = [("u", "a", 0.5, 100.0), ("u", "b", 1.0, 200.0), ("v", "a", 0.5, 50.0)]
    data = InteractionMatrix.from_rows(rows)
    from_row = ProfileView.from_row(data, data.user_index["u"])
    history = [
        HistoryEvent(100.0, "m1", "a", "view", 0.5),
        HistoryEvent(200.0, "m2", "b", "click", 1.0),
    ]
    from_history = ProfileView.from_history(history)
    assert from_row == from_history
    assert from_row.items == ("b", "a") and from_row.ts == (200.0, 100.0)
    lists = {"cf": (["c", "d"], np.array([2.0, 1.0])), "trending": (["d"], np.array([5.0]))}
    facts = ItemFacts(categories=lambda i: ("X",) if i in "ac" else ("Y",))
    stats = ItemStats.from_matrix(data)
    weights = {"cf": 1.0, "trending": 0.5}
    ids, X = candidate_features(lists, from_row, facts, stats, 300.0, weights)
    ids2, X2 = candidate_features(lists, from_history, facts, stats, 300.0, weights)
    assert ids2 == ids and np.array_equal(X2, X)
    assert ids == ["c", "d"] and X.shape == (2, len(FEATURES)) and np.isfinite(X).all()
    col = {name: X[:, j] for j, name in enumerate(FEATURES)}
    assert col["cf_rr"].tolist() == [1.0, 0.5] and col["trending_rr"].tolist() == [0.0, 1.0]
    assert col["n_sources"].tolist() == [1.0, 2.0]
    assert col["blend"].tolist() == [1.0, 0.5 + 0.5]
    # "a" (X) weighs 0.5 of the history's 1.5: candidates in X match a third of it.
    assert col["category_match"].tolist() == pytest.approx([1 / 3, 2 / 3])
    # u holds the longest history of the two users; history length is read as a percentile.
    assert col["history_len"][0] == 1.0 and stats.history.tolist() == [1.0, 2.0]
    assert col["price_gap"].tolist() == [-1.0, -1.0]  # no prices known
    assert col["content_sim"].tolist() == [-1.0, -1.0]  # no item index


def test_top_sources_names_the_largest_weighted_contribution() -> None:
    lists = {
        "cf": (["a", "b", "c"], np.array([3.0, 2.0, 1.0])),
        "trending": (["c", "a"], np.array([9.0, 1.0])),
        "segment": (["z"], np.array([1.0])),
    }
    top = top_sources(lists, {"cf": 1.0, "trending": 0.5})
    # c: cf 1 x 1/3, trending 0.5 x 1; a: cf 1 x 1, trending 0.5 x 1/2; z: no weight at all.
    assert top == {"a": "cf", "b": "cf", "c": "trending", "z": "segment"}


def one_split_tree(feature: str, threshold: float, high: float) -> TreeEnsemble:
    """A one-split tree: rows above ``threshold`` on ``feature`` score ``high``, others 0."""
    return TreeEnsemble(
        feature=np.array([[FEATURES.index(feature), 0, 0]], np.int32),
        threshold=np.array([[threshold, 0.0, 0.0]]),
        missing_left=np.zeros((1, 3), bool),
        left=np.array([[1, 1, 2]], np.int32),
        right=np.array([[2, 1, 2]], np.int32),
        value=np.array([[0.0, 0.0, high]]),
        baseline=0.0,
        depth=1,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("ranked"))


def test_the_engine_orders_the_union_with_a_loaded_ranker(world: World) -> None:
    stats = ItemStats.from_matrix(world.matrix)
    slot = RankerSlot()
    rec = world.recommender(ranker=slot)
    req = RecommendRequest(history=SHOE_FAN, k=10)
    blended = rec.recommend(req)
    assert len(blended) == 10 and blended[0].item_id != "i5"
    # A ranker that puts the top trending item first (a Dresses item this shoe fan never saw).
    slot.swap(Ranker(one_split_tree("trending_rr", 0.99, 10.0), stats, {"cf": 1.0}, 30))
    ranked = rec.recommend(req)
    assert len(ranked) == 10 and ranked[0].item_id == "i5"
    assert ranked[0].source == "trending" and ranked[0].reason == "Trending in Dresses"
    assert all(0.0 < r.score < 1.0 for r in ranked)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    # The rest follows the blend score of the same 30 candidates per source (the tie-break).
    lists, _ = rec.candidate_lists(req, 30)
    ids, X = candidate_features(lists, rec.profile_view(req), rec.facts, stats, NOW, {"cf": 1.0})
    by_blend = [ids[j] for j in np.lexsort((np.arange(len(ids)), -X[:, BLEND_COLUMN]))]
    assert [r.item_id for r in ranked[1:]] == [i for i in by_blend if i != "i5"][:9]
    cf = [r for r in ranked if r.source == "cf"]
    assert cf and all(r.reason.startswith("Because you viewed ") for r in cf)
    # Single strategies and visitors without history never go through the ranker.
    assert rec.recommend(RecommendRequest(history=SHOE_FAN, k=5, strategy="cf"))[0].source == "cf"
    cold = rec.recommend(RecommendRequest(k=5))
    assert cold[0].item_id == "i5" and cold[0].score > 1.0  # trending's own score
    slot.swap(None)
    assert [r.item_id for r in rec.recommend(req)] == [r.item_id for r in blended]


def test_cf_scores_of_a_few_items_match_the_full_scores() -> None:
    from recommend.cf import ALS, EASE, ItemKNN

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(60)}", 1.0, float(n)) for u in range(80) for n in range(8)]
    data = InteractionMatrix.from_rows(rows)
    cols = np.array([0, 3, 7, data.n_items - 1, 5])
    history = data.matrix[:4]
    for model in (EASE(30.0, min_users=3), ALS(factors=8, iterations=3), ItemKNN(10)):
        model.fit(data)
        assert np.allclose(model.score_items(history, cols), model.score(history)[:, cols])

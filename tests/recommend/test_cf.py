from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommend.cf import ALS, EASE, ItemKNN, choose_cf_model, session_matrix
from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel, load_model
from recommend.popularity import Popularity
from recommend.types import ArtifactError, CFConfig, ModelNotTrained


def make_models() -> list[ItemModel]:
    return [
        EASE(lambda_=0.5),
        ItemKNN(neighbours=3),
        ALS(factors=2, iterations=20, regularization=0.01, alpha=10.0, seed=3),
    ]


MODEL_IDS = ["ease", "knn", "als"]


@pytest.fixture(params=range(3), ids=MODEL_IDS)
def model(request: pytest.FixtureRequest, clusters: InteractionMatrix) -> ItemModel:
    return make_models()[request.param].fit(clusters)


def test_co_occurrence_answers(model: ItemModel) -> None:
    ids, scores = model.recommend({"a": 1.0, "b": 1.0}, k=2)
    assert ids[0] in {"c", "d"}
    assert set(ids) == {"c", "d"}
    assert scores.dtype == np.float32
    assert list(scores) == sorted(scores, reverse=True)
    ids, _ = model.recommend({"x": 1.0}, k=2)
    assert set(ids) == {"y", "z"}


def test_exclusion_and_full_k(model: ItemModel, clusters: InteractionMatrix) -> None:
    ids, scores = model.recommend({"a": 1.0}, k=3, exclude={"c", "unknown-item"})
    assert "c" not in ids and "a" not in ids
    assert len(ids) == 3 == len(scores)
    # k larger than the eligible items: every eligible item, no history, nothing excluded
    ids, _ = model.recommend({"a": 1.0}, k=100, exclude={"c"})
    assert sorted(ids) == sorted(set(clusters.item_ids) - {"a", "c"})
    ids, _ = model.recommend({"a": 1.0}, k=2, exclude_history=False)
    assert len(ids) == 2


def test_fold_in_changes_results_without_refit(model: ItemModel) -> None:
    before, _ = model.recommend({"x": 1.0}, k=2)
    after, _ = model.recommend({"x": 1.0, "a": 1.0, "b": 1.0, "c": 1.0}, k=2)
    assert set(before) == {"y", "z"}
    assert "d" in after
    assert after != before


def test_empty_or_unknown_history_gives_nothing(model: ItemModel) -> None:
    assert model.recommend({}, k=3)[0] == []
    assert model.recommend({"never-seen": 1.0}, k=3)[0] == []


def test_batch_matches_single(model: ItemModel, clusters: InteractionMatrix) -> None:
    ids, scores = model.recommend_batch(clusters.matrix, k=3)
    assert ids.shape == scores.shape == (clusters.n_users, 3)
    for user in ("u1", "u5"):
        row = clusters.user_index[user]
        single, single_scores = model.recommend(clusters.user_items(user), k=3)
        assert [clusters.item_ids[i] for i in ids[row] if i >= 0] == single
        np.testing.assert_allclose(scores[row][: len(single)], single_scores, rtol=1e-5)
    seen = clusters.matrix.toarray() > 0
    assert not any(seen[r, i] for r in range(clusters.n_users) for i in ids[r] if i >= 0)


def test_save_load_round_trip(model: ItemModel, tmp_path: Path) -> None:
    path = model.save(tmp_path / "v1")
    assert (path / "manifest.json").is_file()
    loaded = load_model(path)
    assert type(loaded) is type(model)
    assert loaded.item_ids == model.item_ids
    history = {"a": 1.0, "y": 2.0}
    ids, scores = model.recommend(history, k=5)
    loaded_ids, loaded_scores = loaded.recommend(history, k=5)
    assert loaded_ids == ids
    np.testing.assert_allclose(loaded_scores, scores, rtol=1e-6)
    assert type(model).load(path).item_ids == model.item_ids


def test_load_rejects_other_kind_and_broken_dirs(
    clusters: InteractionMatrix, tmp_path: Path
) -> None:
    path = Popularity().fit(clusters).save(tmp_path / "pop")
    with pytest.raises(ArtifactError):
        EASE.load(path)
    with pytest.raises(ArtifactError):
        load_model(tmp_path / "missing")


def test_unfitted_model_raises() -> None:
    with pytest.raises(ModelNotTrained):
        EASE().recommend({"a": 1.0}, k=1)
    with pytest.raises(ModelNotTrained):
        ItemKNN().save("/nonexistent/never-written")


def test_ease_weights_have_zero_diagonal(clusters: InteractionMatrix) -> None:
    model = EASE(lambda_=1.0).fit(clusters)
    # An item's own history must not vote for it: score of "a" from history {"a"} is 0.
    scores = model.score(clusters.history_vector({"a": 1.0}))
    assert scores[0, clusters.item_index["a"]] == 0.0


def test_als_is_deterministic_for_a_seed(clusters: InteractionMatrix) -> None:
    first = ALS(factors=4, iterations=5, seed=7).fit(clusters).recommend({"a": 1.0}, k=4)
    second = ALS(factors=4, iterations=5, seed=7).fit(clusters).recommend({"a": 1.0}, k=4)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])


def test_choose_cf_model() -> None:
    assert isinstance(choose_cf_model(5_000), EASE)
    assert isinstance(choose_cf_model(50_000), ALS)
    assert isinstance(choose_cf_model(50_000, CFConfig(kind="knn")), ItemKNN)
    ease = choose_cf_model(100, CFConfig(ease_lambda=42.0, ease_max_items=10))
    assert isinstance(ease, ALS)
    chosen = choose_cf_model(100, CFConfig(kind="ease", ease_lambda=42.0))
    assert isinstance(chosen, EASE) and chosen.lambda_ == 42.0


def test_popularity_counts_users_and_serves_cold_users(clusters: InteractionMatrix) -> None:
    model = Popularity().fit(clusters)
    ids, scores = model.recommend({}, k=2)
    assert ids[0] == "c" and scores[0] == 4.0
    ids, _ = model.recommend({"c": 1.0}, k=3)
    assert "c" not in ids and len(ids) == 3


def test_ease_matches_the_closed_form(clusters: InteractionMatrix) -> None:
    lam = 2.0
    x = clusters.matrix.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + lam * np.eye(clusters.n_items))
    b = np.eye(clusters.n_items) - p / np.diag(p)
    history = {"a": 1.0, "x": 2.0}
    expected = clusters.history_vector(history).toarray() @ b
    got = EASE(lambda_=lam, min_users=1).fit(clusters).score(clusters.history_vector(history))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ease_min_users_leaves_rare_items_unscored(clusters: InteractionMatrix) -> None:
    model = EASE(lambda_=1.0, min_users=2).fit(clusters)
    # "lonely" has one user: it never enters B, so nothing votes for it
    scores = model.score(clusters.history_vector({"a": 1.0, "x": 1.0}))
    assert scores[0, clusters.item_index["lonely"]] == 0.0
    assert model.recommend({"lonely": 1.0}, k=3)[1].tolist() == [0.0, 0.0, 0.0]


def test_session_matrix_cuts_each_users_history_into_windows() -> None:
    hour = 3600.0
    data = InteractionMatrix.from_rows(
        [
            ("u1", "a", 1.0, 0.0),
            ("u1", "b", 1.0, 60.0),
            ("u1", "c", 2.0, 10 * hour),  # another window: 10 h later
            ("u1", "d", 1.0, 10 * hour + 30.0),
            ("u2", "a", 1.0, 30.0),  # another user: another session, whatever the time
            ("u2", "c", 1.0, 90.0),
        ]
    )
    sessions = session_matrix(data, window_s=hour).toarray()
    col = data.item_index
    rows = {frozenset(i for i in col if s[col[i]] > 0) for s in sessions}
    assert rows == {frozenset("ab"), frozenset("cd"), frozenset("ac")}
    assert sessions.shape == (3, data.n_items)
    assert sessions.sum() == data.matrix.sum()  # the weights, once each
    assert session_matrix(data, window_s=100 * hour).shape[0] == 2  # one per user
    assert session_matrix(data, window_s=45.0).shape[0] == 5  # u2's two fall in two windows
    with pytest.raises(ValueError):
        session_matrix(data, window_s=0.0)


def test_ease_with_sessions_adds_the_sessions_co_occurrences() -> None:
    hour = 3600.0
    rows = [
        # each user met "a" with "b" in one sitting, "c" a long time later
        (f"u{n}", item, 1.0, ts)
        for n in range(6)
        for item, ts in (("a", 0.0), ("b", 60.0), ("c", 400 * hour))
    ] + [("v", "a", 1.0, 0.0), ("v", "c", 1.0, 30.0)]
    data = InteractionMatrix.from_rows(rows)
    lam = 1.0
    x = data.matrix.toarray().astype(np.float64)
    s = session_matrix(data, window_s=hour).toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + s.T @ s + lam * np.eye(data.n_items))
    b = np.eye(data.n_items) - p / np.diag(p)
    model = EASE(lambda_=lam, min_users=1, session_s=hour).fit(data)
    history = data.history_vector({"a": 1.0})
    np.testing.assert_allclose(model.score(history), history.toarray() @ b, atol=1e-5)
    # within sessions "a" goes with "b" far more than with "c": sessions tip the answer to "b"
    plain = EASE(lambda_=lam, min_users=1).fit(data).score(history)[0]
    with_sessions = model.score(history)[0]
    b_col, c_col = data.item_index["b"], data.item_index["c"]
    assert with_sessions[b_col] - with_sessions[c_col] > plain[b_col] - plain[c_col]
    assert model._params()["session_s"] == hour
    assert choose_cf_model(3, CFConfig(kind="ease", ease_session_s=hour)).session_s == hour


def test_ease_with_sessions_round_trips(tmp_path: Path, clusters: InteractionMatrix) -> None:
    model = EASE(lambda_=1.0, session_s=1800.0).fit(clusters)
    loaded = load_model(model.save(tmp_path / "m"))
    assert isinstance(loaded, EASE) and loaded.session_s == 1800.0
    history = clusters.history_vector({"a": 1.0})
    np.testing.assert_allclose(loaded.score(history), model.score(history))

from __future__ import annotations

import json

import numpy as np
import pytest

from recommend.blend import blend_batch
from recommend.cf import EASE, ItemKNN
from recommend.interactions import InteractionMatrix
from recommend.offline.evaluate import (
    METRIC_COLUMNS,
    BlendStrategy,
    evaluate_lists,
    evaluate_strategies,
    render_table,
    to_json,
    tune_blend_weights,
)
from recommend.offline.splits import leave_last_n_split, random_split
from recommend.popularity import Popularity


def clustered(seed: int = 0, n_users: int = 120) -> InteractionMatrix:
    """Users each pick 6 items from one of 4 taste clusters of 10 items; one global hit."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        cluster = u % 4
        for j, item in enumerate(rng.choice(10, size=6, replace=False)):
            rows.append((f"u{u}", f"c{cluster}-{item}", 1.0, float(j)))
        if u % 2 == 0:
            rows.append((f"u{u}", "blockbuster", 1.0, 9.0))
    return InteractionMatrix.from_rows(rows)


def test_strategies_side_by_side_cf_beats_popularity() -> None:
    split = random_split(clustered(), 0.25, seed=0)
    rows = evaluate_strategies(
        [Popularity(), ItemKNN(neighbours=20), EASE(lambda_=10.0)], split, k=5
    )
    assert [r["strategy"] for r in rows] == ["popularity", "knn", "ease"]
    for row in rows:
        assert row["k"] == 5 and row["users"] == 120
        assert set(METRIC_COLUMNS) <= set(row)
        assert all(0.0 <= row[m] <= 1.0 for m in ("precision", "recall", "ndcg", "hit_rate", "map"))
    by_name = {r["strategy"]: r for r in rows}
    assert by_name["ease"]["ndcg"] > 1.5 * by_name["popularity"]["ndcg"]
    assert by_name["ease"]["coverage"] > by_name["popularity"]["coverage"]
    assert by_name["ease"]["novelty"] > by_name["popularity"]["novelty"]


def test_evaluation_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[dict[str, object]]:
        split = random_split(clustered(), seed=seed)
        return evaluate_strategies([ItemKNN(neighbours=20)], split, k=5)

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_timings_only_when_asked() -> None:
    split = random_split(clustered(), seed=0)
    (row,) = evaluate_strategies([Popularity()], split, k=5, timings=True)
    assert row["fit_s"] >= 0 and row["recommend_s"] >= 0


def test_table_and_json_rendering() -> None:
    rows = [
        {"strategy": "popularity", "k": 10, "ndcg": 0.2},
        {"strategy": "ease", "k": 10, "ndcg": 0.38123},
    ]
    table = render_table(rows).splitlines()
    assert table[0].split() == ["strategy", "k", "ndcg"]
    assert table[3].split() == ["ease", "10", "0.3812"]
    assert len({len(line) for line in table}) == 1  # aligned columns
    assert json.loads(to_json(rows)) == rows
    assert render_table([]) == ""


def test_blend_strategy_runs_through_the_evaluator() -> None:
    split = random_split(clustered(), seed=0)
    blended = BlendStrategy(
        {"ease": EASE(lambda_=10.0), "pop": Popularity()}, {"ease": 1.0, "pop": 0.2}
    )
    (row,) = evaluate_strategies([blended], split, k=5)
    assert row["strategy"] == "blend"
    assert row["ndcg"] > 0.0


def test_tuner_prefers_the_informative_source_and_is_deterministic() -> None:
    data = clustered(seed=1)
    sources = {"ease": EASE(lambda_=10.0), "pop": Popularity()}
    result = tune_blend_weights(sources, data, grid=(0.0, 0.5, 1.0), k=5, seed=2)
    assert result.metric == "ndcg"
    assert result.weights["ease"] > result.weights["pop"]
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.score == result.trials[0]["ndcg"] >= result.trials[-1]["ndcg"]
    # 8 non-zero grid points, but (1, 1) = (0.5, 0.5) and (1, 0) = (0.5, 0) etc. as blends:
    # 5 distinct normalized vectors are tried
    assert len(result.trials) == 5
    again = tune_blend_weights(sources, data, grid=(0.0, 0.5, 1.0), k=5, seed=2)
    assert again.weights == result.weights and again.trials == result.trials
    sampled = tune_blend_weights(sources, data, grid=(0.0, 0.5, 1.0), n_trials=4, k=5, seed=2)
    assert 1 <= len(sampled.trials) <= 4
    with pytest.raises(ValueError):
        tune_blend_weights(sources, data, metric="auc")


def test_tuner_scores_on_the_split_it_is_given() -> None:
    data = clustered(seed=1)
    sources = {"ease": EASE(lambda_=10.0), "pop": Popularity()}
    inner = leave_last_n_split(data, 1)  # what comes next, instead of a random quarter
    result = tune_blend_weights(sources, data, grid=(0.0, 0.5, 1.0), k=5, inner=inner)
    for source in sources.values():
        source.fit(inner.train)
    lists = {n: s.recommend_batch(inner.train.matrix, 100) for n, s in sources.items()}
    for trial in result.trials:
        ids, _ = blend_batch(lists, trial["weights"], 5, data.n_items)
        assert trial["ndcg"] == pytest.approx(evaluate_lists(ids, inner, 5)["ndcg"])
    default = tune_blend_weights(sources, data, grid=(0.0, 0.5, 1.0), k=5)
    assert [t["ndcg"] for t in default.trials] != [t["ndcg"] for t in result.trials]

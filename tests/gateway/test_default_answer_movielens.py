"""The issue's MovieLens figure through the CLI: `tailor evaluate --ranker` on ml-latest-small,
the project's per-user random 75/25 protocol (seed 42), every single strategy in the same run.

Targets: the default answer (ranker, or the tuned blend when the ranker does not beat it on its
validation users) >= 0.39 NDCG@10, above EASE (0.382) and strictly above every single strategy.
All three are asserted. Measured: default = the ranker, 0.4038 NDCG@10, above the tuned CF
(EASE with 5-minute sessions, lambda 150, linear rating curve) at 0.4016; the ranker was chosen
on its pooled 5-fold validation gain over the blend on the training part (+0.0055, standard
error 0.0023), never on the test split. The margin on the test split is small: +0.0023 with a
paired per-user standard error of 0.0024 (671 users; 273 better, 256 worse).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.main import main
from tests.conftest import SECRET, movielens_dir

SINGLE = ("popularity", "ease", "knn", "als", "trending", "cf(tuned)")


@pytest.fixture(scope="module")
def movielens_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    movielens_dir()  # fails (never skips) when the dataset is missing; the CLI reads the same place
    tmp = tmp_path_factory.mktemp("ml")
    out = tmp / "ml.json"
    mp = pytest.MonkeyPatch()
    mp.setenv("TAILOR_JWT_SECRET", SECRET)
    try:
        code = main(
            [
                "evaluate",
                "--data",
                "movielens",
                "--split",
                "random",
                "--ranker",
                "--json",
                str(out),
                "--data-dir",
                str(tmp / "var"),
            ]
        )
    finally:
        mp.undo()
    assert code == 0
    doc: dict[str, object] = json.loads(Path(out).read_text())
    return doc


def ndcg_of(doc: dict[str, object]) -> dict[str, float]:
    rows = doc["rows"]
    assert isinstance(rows, list)
    return {r["strategy"]: r["ndcg"] for r in rows}


@pytest.mark.slow
def test_the_default_answer_beats_ease_and_is_never_below_a_single_strategy(
    movielens_run: dict[str, object],
) -> None:
    ndcg = ndcg_of(movielens_run)
    assert 0.15 < ndcg["popularity"] < 0.25  # the protocol matches the known baseline
    assert abs(ndcg["ease"] - 0.382) < 0.002  # EASE as the issue measured it
    # CF tuned on the training part (EASE that also learns from 5-minute sessions) lifts it.
    assert ndcg["default"] >= 0.39
    assert ndcg["default"] > ndcg["ease"] * 1.02
    assert ndcg["default"] >= max(ndcg[s] for s in SINGLE)
    pipeline = movielens_run["pipeline"]
    assert isinstance(pipeline, dict) and pipeline["default"] in ("ranker", "blend(tuned)")


@pytest.mark.slow
def test_the_default_answer_is_strictly_above_every_single_strategy(
    movielens_run: dict[str, object],
) -> None:
    ndcg = ndcg_of(movielens_run)
    assert ndcg["default"] > max(ndcg[s] for s in SINGLE)
    pipeline = movielens_run["pipeline"]
    assert isinstance(pipeline, dict) and pipeline["default"] == "ranker"  # the blend is cf(tuned)

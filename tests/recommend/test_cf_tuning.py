"""CF tuned on the data it serves: rating curves, a bounded search on a validation split, and
`train_cf` recording what it chose and writing the tuned blend weights into the same version."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from profiles.types import ProfileConfig
from recommend.cf_tuning import RATING_CURVES, rating_weight, restrict, tune_cf
from recommend.interactions import InteractionMatrix
from recommend.offline.splits import random_split
from recommend.training import CFStore, CFTraining, interaction_matrix, train_cf
from recommend.types import CFConfig
from storage.types import EventRecord

CONFIG = ProfileConfig()


def event(n: int, user: str, item: str, etype: str, value: float | None = None) -> EventRecord:
    props = {"value": value} if value is not None else {}
    return EventRecord(
        f"m{n}", etype, user, 1000.0 + n, 1000.0 + n, "h", item_id=item, properties=props
    )


def rated_world(seed: int = 1) -> list[EventRecord]:
    """Two taste groups that rate their own items high and sample the other group's low."""
    rng = random.Random(seed)
    events, n = [], 0
    for u in range(60):
        mine, other = (range(0, 20), range(20, 40)) if u % 2 else (range(20, 40), range(0, 20))
        for item in rng.sample(list(mine), 10):
            events.append(event(n, f"u{u}", f"i{item}", "rate", rng.choice([4.0, 4.5, 5.0])))
            n += 1
        for item in rng.sample(list(other), 4):
            events.append(event(n, f"u{u}", f"i{item}", "rate", rng.choice([0.5, 1.0, 1.5])))
            n += 1
        events.append(event(n, f"u{u}", f"i{rng.choice(list(mine))}", "view"))
        n += 1
    return events


def test_rating_curves_weigh_ratings_by_value() -> None:
    assert rating_weight(5.0, 1.0, "linear") == 1.0 and rating_weight(2.5, 2.0, "linear") == 1.0
    assert rating_weight(0.5, 1.0, "binary") == rating_weight(5.0, 1.0, "binary") == 1.0
    assert rating_weight(1.0, 1.0, "centered") < 0 < rating_weight(4.0, 1.0, "centered")
    with pytest.raises(ValueError, match="unknown rating curve"):
        rating_weight(3.0, 1.0, "cubic")
    events = [
        event(1, "u", "a", "rate", 1.0),
        event(2, "u", "b", "rate", 5.0),
        event(3, "u", "c", "view"),
        event(4, "u", "c", "rate", 0.5),  # a view cancelled by a bad rating: dropped
    ]
    weights = {
        curve: interaction_matrix(events, CONFIG, rating=curve).user_items("u")
        for curve in RATING_CURVES
    }
    assert weights["linear"] == pytest.approx({"a": 0.2, "b": 1.0, "c": 0.6})
    assert weights["binary"] == pytest.approx({"a": 1.0, "b": 1.0, "c": 1.5})
    assert weights["centered"] == pytest.approx({"b": 1.0})  # 1-star: negative evidence


def test_restrict_follows_the_served_split() -> None:
    events = rated_world()
    served = interaction_matrix(events, CONFIG)
    centered = interaction_matrix(events, CONFIG, rating="centered")
    split = random_split(served, 0.25, seed=0)
    part = restrict(centered, split.train)
    train_pairs = {(u, i) for u, i, _w, _t in split.train.rows()}
    assert {(u, i) for u, i, _w, _t in part.rows()} <= train_pairs
    assert part.nnz < split.train.nnz  # the low ratings are gone
    with pytest.raises(ValueError, match="id maps"):
        restrict(InteractionMatrix.from_rows([("x", "y", 1.0, 0.0)]), split.train)


class StepClock:
    """Every reading is ``step`` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_the_search_is_bounded_and_picks_its_best_trial() -> None:
    events = rated_world()
    served = interaction_matrix(events, CONFIG)
    variants = {c: interaction_matrix(events, CONFIG, rating=c) for c in RATING_CURVES}
    config = CFConfig(kind="ease", ease_lambda=300.0, ease_min_users=1)

    none = tune_cf(served, variants, config, budget_s=0.0, clock=StepClock(1.0))
    assert len(none.trials) == 1 and none.config.ease_lambda == 300.0 and none.curve == "linear"

    # Each trial "takes" 2 clock readings of 1 s: a 7 s budget holds the first three.
    few = tune_cf(served, variants, config, budget_s=7.0, clock=StepClock(1.0))
    assert len(few.trials) == 3

    capped = tune_cf(served, variants, config, budget_s=1e9, max_trials=4)
    assert len(capped.trials) == 4  # whatever the clock says

    full = tune_cf(served, variants, config, budget_s=1e9)
    tried = {t["curve"] for t in full.trials}
    assert tried == set(RATING_CURVES)
    best = max(full.trials, key=lambda t: t["ndcg"])
    assert full.ndcg == pytest.approx(best["ndcg"], abs=1e-6)
    chosen = (full.config.ease_lambda, full.config.ease_session_s, full.curve)
    assert chosen == (best["ease_lambda"], best["ease_session_s"], best["curve"])
    assert full.params() == {
        "kind": "ease",
        "ease_session_s": full.config.ease_session_s,
        "ease_lambda": full.config.ease_lambda,
    }
    assert {t["kind"] for t in full.trials} == {"ease"}  # kind fixed: no other model tried
    # Low ratings as weak (linear) or negative (centered) evidence beat the fact of rating here.
    assert full.curve in ("linear", "centered")
    lambdas = sorted({t["ease_lambda"] for t in full.trials})
    assert len(lambdas) >= 3 and 300.0 in lambdas
    # Sessions are tried (from none, up the ladder) before lambda.
    gaps = [t["ease_session_s"] for t in full.trials]
    assert gaps[0] == 0.0 and 300.0 in gaps


def test_als_and_knn_search_their_own_parameters() -> None:
    served = interaction_matrix(rated_world(), CONFIG)
    als = tune_cf(
        served,
        {"linear": served},
        CFConfig(kind="als", als_factors=16, als_iterations=3),
        budget_s=1e9,
    )
    assert set(als.params()) == {"kind", "als_factors", "als_regularization"}
    # 40 items: factors stay at 16 (a quarter of the catalog, floored at 16); reg is searched.
    assert {t["als_factors"] for t in als.trials} == {16}
    assert len({t["als_regularization"] for t in als.trials}) >= 2
    knn = tune_cf(served, {"linear": served}, CFConfig(kind="knn"), budget_s=1e9)
    assert {t["knn_neighbours"] for t in knn.trials} >= {50, 100}


def test_train_cf_records_the_choice_and_ships_tuned_weights(tmp_path: Path) -> None:
    store = CFStore(tmp_path / "cf")
    configured = {"cf": 1.0, "content": 0.5, "segment": 0.3, "trending": 0.2, "context": 0.8}
    version, info, model, weights = train_cf(
        rated_world(),
        CFConfig(kind="ease", ease_min_users=1),
        CONFIG,
        store,
        training=CFTraining(tune_budget_s=30.0, configured_weights=configured),
    )
    assert model.kind == "ease" and weights is not None
    trained = json.loads((store.root / version / "trained.json").read_text())
    chosen = trained["tuning"]["chosen"]
    assert chosen["rating_curve"] == trained["rating_curve"] == info["rating_curve"]
    assert chosen["ease_lambda"] == trained["params"]["lambda_"] == model.lambda_  # type: ignore[attr-defined]
    assert len(trained["tuning"]["trials"]) >= 2
    served = store.read_weights(version)
    assert served is not None and set(served) == set(configured)
    assert served == weights and served != configured
    assert trained["blend"]["tuned_by"] == "tailor train cf"

    # No budget: the configured setting, no weights file (the configured weights serve).
    version2, info2, _model, weights2 = train_cf(
        rated_world(), CFConfig(), CONFIG, store, training=CFTraining(tune_budget_s=0.0)
    )
    assert weights2 is None and "tuning" not in info2 and store.read_weights(version2) is None
    assert np.isclose(info2["params"]["lambda_"], 300.0)


def test_auto_also_tries_als_and_keeps_the_better_model() -> None:
    served = interaction_matrix(rated_world(), CONFIG)
    auto = tune_cf(
        served, {"linear": served}, CFConfig(als_factors=16, als_iterations=3), budget_s=1e9
    )
    kinds = [t["kind"] for t in auto.trials]
    assert kinds[0] == "ease" and "als" in kinds
    best = max(auto.trials, key=lambda t: t["ndcg"])
    assert auto.config.kind == best["kind"] and auto.ndcg == pytest.approx(best["ndcg"], abs=1e-6)

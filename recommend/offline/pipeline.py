"""What ``tailor train cf`` and ``tailor train ranker`` would serve, rebuilt on an evaluation's
training part: the default answer of ``tailor evaluate``.

On the training part only: the CF setting and rating curve are tuned as ``tailor train cf``
tunes them (:func:`recommend.cf_tuning.tune_cf`), then the blend weights of CF, trending and
content (:func:`recommend.offline.evaluate.tune_blend_weights`, on an inner split of the
evaluation's own kind), then a LambdaRank ranker learns
from an inner split of the evaluation's own kind (:class:`recommend.offline.ranking.
RankerStrategy`). Rows: ``cf(tuned)`` (a single strategy, like the others), ``blend(tuned)``,
``ranker`` and ``default`` — the ranker when it beat the tuned blend on its own validation
users (``tailor train ranker`` publishes it only then), else the tuned blend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommend.cf import choose_cf_model
from recommend.cf_tuning import TrainedOn, tune_cf
from recommend.content import ContentService
from recommend.interactions import InteractionMatrix
from recommend.offline.evaluate import BlendStrategy, Strategy, tune_blend_weights
from recommend.offline.ranking import RankerStrategy
from recommend.offline.splits import Split, leave_last_n_split, random_split, temporal_split
from recommend.offline.strategies import ContentSimilarity, DecayedPopularity, Fitted
from recommend.ranker import RankerParams
from recommend.ranker_features import ItemFacts
from recommend.training import complete_weights
from recommend.types import CFConfig, RecommendError

#: The CF search of an evaluation ends after this many trials (``budget_s`` is only a cap), so
#: that a run's figures do not depend on the load of the machine it runs on. On MovieLens the
#: search ends by itself after ~8 (session window, curve, lambda, ALS).
CF_TRIALS = 12
#: Inner random splits whose groups the ranker learns from under the random protocol. On
#: MovieLens (610 users) two splits gave ~1200 groups: early stopping ended after a few rounds
#: and the ranker did not beat the tuned CF (0.3954 vs 0.4016 NDCG@10); four, with the slower
#: learning rate and larger leaves below, learned 45 rounds that beat it on the pooled 5-fold
#: validation gain of the training part (+0.0055 +- 0.0023) and on the test split.
RANDOM_REPEATS = 4
RANKER_LEARNING_RATE = 0.05
RANKER_MIN_DATA_IN_LEAF = 200


@dataclass
class Pipeline:
    """The fitted pipeline strategies and what was chosen on the way."""

    strategies: list[Any]
    info: dict[str, Any] = field(default_factory=dict)


def inner_split(kind: str, seed: int, last_n: int) -> Callable[[InteractionMatrix, int], Split]:
    """The ranker's labelled split of a training part, of the evaluation's own kind."""

    def split(data: InteractionMatrix, repeat: int) -> Split:
        if kind == "random":
            return random_split(data, 0.25, seed=seed + 1 + repeat)
        if kind == "leave-last-n":
            return leave_last_n_split(data, last_n)
        return temporal_split(data, test_fraction=0.2)

    return split


def build_pipeline(
    train: InteractionMatrix,
    variants: Mapping[str, InteractionMatrix],
    *,
    config: CFConfig,
    configured_weights: Mapping[str, float],
    half_life_s: float,
    content: ContentService | None,
    facts: ItemFacts,
    split_kind: str,
    seed: int,
    last_n: int,
    k: int,
    budget_s: float,
    ranker: bool,
) -> Pipeline:
    """Tune and fit on ``train`` (the served weights of the evaluation's training part);
    ``variants`` are the rating curves' weightings of the same interactions."""
    started = time.perf_counter()
    tuning = tune_cf(
        train, variants, config, budget_s=budget_s, seed=seed, k=k, max_trials=CF_TRIALS
    )
    variant = variants[tuning.curve]
    chosen = tuning.config

    def cf_source(name: str = "cf") -> TrainedOn:
        return TrainedOn(choose_cf_model(train.n_items, chosen), variant, name=name)

    def fresh_sources() -> dict[str, Any]:
        out: dict[str, Any] = {
            "cf": cf_source(),
            "trending": DecayedPopularity(half_life_s),
        }
        if content is not None:
            out["content"] = ContentSimilarity(content)
        return out

    cf = cf_source("cf(tuned)").fit(train)
    fitted: dict[str, Strategy] = {"cf": Fitted(cf)}
    for name, source in fresh_sources().items():
        if name != "cf":
            fitted[name] = Fitted(source.fit(train))
    # Weights for a time split are tuned on a time split of the training part (what comes
    # next, as the evaluation asks); for the random protocol on a random one.
    protocol = None if split_kind == "random" else inner_split(split_kind, seed, last_n)(train, 0)
    tuned = tune_blend_weights(fresh_sources(), train, k=k, seed=seed, inner=protocol)
    weights = complete_weights(tuned.weights, configured_weights)
    blend = BlendStrategy(fitted, weights, name="blend(tuned)")
    info: dict[str, Any] = {
        "cf": {**tuning.params(), "rating_curve": tuning.curve},
        "cf_validation_ndcg": round(tuning.ndcg, 6),
        "blend_weights": weights,
        "blend_validation_ndcg": round(tuned.score, 6),
    }
    strategies: list[Any] = [Fitted(cf), blend]
    default: Any = blend
    if ranker:
        learned = RankerStrategy(
            fresh_sources,
            fitted,
            inner_split(split_kind, seed, last_n),
            facts=facts,
            weights=weights,
            params=RankerParams(
                seed=seed,
                budget_s=max(budget_s, 30.0),
                learning_rate=RANKER_LEARNING_RATE,
                min_data_in_leaf=RANKER_MIN_DATA_IN_LEAF,
            ),
            prefitted=True,
            repeats=RANDOM_REPEATS if split_kind == "random" else 1,
        )
        try:
            learned.fit(train)
        except RecommendError as exc:
            info["ranker"] = f"not learned: {exc}"
        else:
            assert learned.ranker is not None
            summary = dict(learned.ranker.info)
            info["ranker"] = summary
            strategies.append(Fitted(learned))
            if summary.get("beats_blend"):
                default = learned
    info["default"] = "ranker" if default is not blend else "blend(tuned)"
    default_row = Fitted(default)
    default_row.name = "default"
    strategies.append(default_row)
    info["seconds"] = round(time.perf_counter() - started, 1)
    return Pipeline(strategies, info)


def cold_users(train: InteractionMatrix, max_events: int = 3) -> np.ndarray:
    """Users whose training history holds 1 to ``max_events`` interactions."""
    n = np.diff(train.matrix.indptr)
    return (n >= 1) & (n <= max_events)

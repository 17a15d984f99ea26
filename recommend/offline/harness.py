"""``tailor evaluate``: every recommendation strategy side by side on one split, and the weight tuner.

Data: ``movielens`` (``ml-latest-small`` ratings as implicit interactions, from
``$TAILOR_DATASETS_DIR``) or ``store`` (the gateway's own event log, weighted per event type as in
training). Splits: per-user ``random`` (75/25, seeded), global ``temporal`` (newest 20% of the
entries held out) and per-user ``leave-last-n``. Strategies, each scored by
:func:`recommend.offline.evaluate.evaluate_strategies` (fitted on train, top-k excluding each user's
training items):

* ``popularity``: distinct users per item (the baseline);
* ``ease``, ``knn``, ``als``: the CF models as :func:`recommend.cf.choose_cf_model` builds them;
* ``trending``: time-decayed popularity with the serving half-life, decayed to the newest
  training event (the same formula as :class:`recommend.trending.TrendingModel`);
* ``content`` (store data, when an item index exists): the user's mean item embedding against
  every item embedding of the serving index (real MiniLM vectors unless the index was built
  with another encoder);
* ``hybrid``: the serving blend (rank-normalized weighted sum) of the serving CF model, content
  and trending with the configured weights, or the tuned ones of the serving CF version.

``--tune`` searches blend weights on a validation split carved out of the training part (never
the test part), adds a ``hybrid(tuned)`` row, and, for store data, saves the weights next to the
newest CF version (``models/cf/<version>/weights.json``), where the gateway picks them up.

The default answer (``ranker=True``, or a store that has a ranker version): the pipeline of
:mod:`recommend.offline.pipeline` rebuilt on the training part — ``cf(tuned)``, ``blend(tuned)``,
``ranker`` and ``default`` rows, over the interactions weighted as Tailor serves them
(``served``: MovieLens ratings as an imported ``rate`` event weighs them, value / 5; the
baselines keep the fact of rating, the published protocol, over the same entries and split).
Every row is also scored on the cold users alone (1 to 3 training interactions): ``cold_rows``.
Everything is deterministic for a seed (ALS and LightGBM train single-threaded or
deterministically with that seed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recommend.cf import choose_cf_model
from recommend.content import ContentService
from recommend.interactions import InteractionMatrix
from recommend.offline.evaluate import (
    BlendStrategy,
    Row,
    Strategy,
    evaluate_strategies,
    tune_blend_weights,
)
from recommend.offline.pipeline import build_pipeline, cold_users
from recommend.offline.report import (
    COLUMNS,
    DATASETS,
    SPLITS,
    EvaluationReport,
    columns,
    summary_lines,
    write_json,
)
from recommend.offline.splits import Split, leave_last_n_split, random_split, temporal_split
from recommend.offline.strategies import ContentSimilarity, DecayedPopularity, Fitted
from recommend.popularity import Popularity
from recommend.ranker_features import ItemFacts
from recommend.training import CFStore
from recommend.types import CFConfig, RecommendError

PIPELINE_ROWS = ("cf(tuned)", "blend(tuned)", "ranker", "default")
__all__ = [
    "COLUMNS",
    "DATASETS",
    "SPLITS",
    "EvaluationInputs",
    "EvaluationReport",
    "columns",
    "evaluate",
    "evaluate_splits",
    "summary_lines",
    "write_json",
]

log = logging.getLogger("tailor.evaluate")


def subsample_users(data: InteractionMatrix, n_users: int, seed: int) -> InteractionMatrix:
    """The interactions of ``n_users`` users drawn with ``seed`` (all of them if fewer)."""
    if n_users >= data.n_users:
        return data
    keep = np.random.default_rng(seed).choice(data.n_users, size=n_users, replace=False)
    return data.select(np.isin(data.entry_users(), keep))


def make_split(data: InteractionMatrix, kind: str, seed: int, last_n: int = 1) -> Split:
    if kind == "random":
        return random_split(data, 0.25, seed=seed)
    if kind == "temporal":
        return temporal_split(data, test_fraction=0.2)
    if kind == "leave-last-n":
        return leave_last_n_split(data, last_n)
    raise ValueError(f"unknown split {kind!r}; one of {SPLITS}")


def _cf(kind: str, n_items: int, config: CFConfig, seed: int) -> Any:
    return choose_cf_model(n_items, CFConfig(**{**_fields(config), "kind": kind, "seed": seed}))


def _fields(config: CFConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@dataclass(frozen=True)
class EvaluationInputs:
    """What an evaluation runs on: the interactions and the serving configuration.

    ``data`` names the source (``movielens`` or ``store``); for store data, ``content`` is the
    serving item index (None: content is left out) and ``cf_store`` the CF versions whose tuned
    weights the hybrid uses, and where ``--tune`` saves new ones."""

    data: str
    matrix: InteractionMatrix
    cf_config: CFConfig
    half_life_s: float
    weights: Mapping[str, float]
    content: ContentService | None = None
    cf_store: CFStore | None = None
    #: The same entries as ``matrix`` weighted as Tailor serves them (None: ``matrix`` is).
    served: InteractionMatrix | None = None
    #: Rating curve -> training weights of the served entries (None: ``{"linear": served}``).
    variants: Mapping[str, InteractionMatrix] | None = None
    #: Categories and prices of items (the ranker's catalog features).
    facts: ItemFacts | None = None
    #: True when the store serves a learned ranker: its evaluation then includes one.
    has_ranker: bool = False


def evaluate(
    inputs: EvaluationInputs,
    *,
    split: str = "random",
    k: int = 10,
    seed: int = 42,
    last_n: int = 1,
    tune: bool = False,
    max_users: int | None = None,
    only: Sequence[str] | None = None,
    ranker: bool | None = None,
    budget_s: float = 600.0,
    tuned_weights: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Run the comparison (see the module docstring); ``max_users`` subsamples users first;
    ``only`` names the strategies to report (default: all; ``popularity`` is always kept, as
    the baseline). ``ranker``: evaluate the default answer (None: when the store serves a
    ranker, or ``only`` names a pipeline row); ``budget_s`` caps its CF tuning and ranker
    (the CF search also ends after :data:`recommend.offline.pipeline.CF_TRIALS` trials).
    ``tuned_weights`` (from an earlier split's ``--tune``) evaluate ``hybrid(tuned)`` without
    tuning again."""
    data, matrix, content = inputs.data, inputs.matrix, inputs.content
    if data not in DATASETS:
        raise ValueError(f"unknown data {data!r}; one of {DATASETS}")
    if matrix.nnz == 0:
        raise RecommendError(f"no interactions in {data}: import events first")
    served = inputs.served if inputs.served is not None else matrix
    if served.matrix.data.shape != matrix.matrix.data.shape:
        raise ValueError("served must hold the same entries as matrix")
    if max_users is not None:
        before = matrix
        matrix = subsample_users(matrix, max_users, seed)
        if served is not before:
            served = served.select(np.isin(served.entry_users(), _kept_users(matrix)))
        else:
            served = matrix
    parts = make_split(matrix, split, seed, last_n)
    served_parts = parts if served is matrix else parts.apply(served)
    cold = {"cold": cold_users(parts.train)}
    cold_rows: dict[str, list[Row]] = {}
    config = inputs.cf_config
    serving_kind = choose_cf_model(matrix.n_items, config).kind
    half_life = inputs.half_life_s

    popularity = Popularity()
    cf_models = {kind: _cf(kind, matrix.n_items, config, seed) for kind in ("ease", "knn", "als")}
    trending = DecayedPopularity(half_life)
    strategies: list[Any] = [popularity, *cf_models.values(), trending]
    sources: dict[str, Any] = {
        "cf": Fitted(cf_models[serving_kind]),
        "trending": Fitted(trending),
    }
    notes = [f"hybrid uses the serving CF model: {serving_kind} ({config.kind})"]
    if content is not None:
        content_strategy = ContentSimilarity(content)
        strategies.append(content_strategy)
        sources["content"] = Fitted(content_strategy)
        notes.append(f"content uses the serving index {content.version}")
    elif data == "store":
        notes.append("no item index: content left out (run `tailor train index`)")

    weights = dict(inputs.weights)
    cf_store = inputs.cf_store if data == "store" else None
    version = cf_store.latest() if cf_store is not None else None
    tuned_saved = cf_store.read_weights(version) if cf_store is not None and version else None
    if tuned_saved:
        weights = tuned_saved
        notes.append(f"hybrid uses the weights tuned for CF version {version}")
    strategies.append(BlendStrategy(sources, weights, name="hybrid"))

    wanted_pipeline = set(only or ()) & set(PIPELINE_ROWS)
    pipeline = bool(ranker) or bool(wanted_pipeline) or (ranker is None and inputs.has_ranker)
    if only is not None:
        unknown = set(only) - {s.name for s in strategies} - set(PIPELINE_ROWS)
        if unknown:
            raise RecommendError(f"unknown strategies {sorted(unknown)}")
        keep = {"popularity", *only}
        strategies = [s for s in strategies if s.name in keep]
        # The hybrids reuse their sources' fits; fit those that are not evaluated themselves.
        if "hybrid" in keep or tune:
            for source in sources.values():
                if source.inner not in strategies:
                    source.inner.fit(parts.train)
    rows = evaluate_strategies(strategies, parts, k, groups=cold, group_rows=cold_rows)
    pipeline_info = None
    if pipeline:
        # The curves' weightings share the served id maps: tuning restricts them to the
        # (subsampled) training part; "linear" is how profiles weigh ratings, i.e. served.
        variants = {**(inputs.variants or {}), "linear": served}
        built = build_pipeline(
            served_parts.train,
            variants,
            config=config,
            configured_weights=inputs.weights,
            half_life_s=half_life,
            content=content,
            facts=inputs.facts
            or (ItemFacts(similarity=content.similarity) if content else ItemFacts()),
            split_kind=split,
            seed=seed,
            last_n=last_n,
            k=k,
            budget_s=budget_s,
            ranker=ranker is not False,
        )
        chosen = [s for s in built.strategies if not wanted_pipeline or s.name in wanted_pipeline]
        rows += evaluate_strategies(chosen, served_parts, k, groups=cold, group_rows=cold_rows)
        pipeline_info = built.info
        notes.append(
            f"default answer: {built.info['default']} (cf(tuned), blend(tuned) and the ranker "
            "are tuned and learned on the training part only)"
        )
        if served is not matrix:
            notes.append(
                "cf(tuned), blend(tuned), ranker and default see the ratings as Tailor weighs "
                "an imported rate event (value / 5); the other rows the fact of rating"
            )
    report = EvaluationReport(
        rows=rows,
        data=data,
        split=split,
        seed=seed,
        k=k,
        users=int((np.diff(matrix.matrix.indptr) > 0).sum()),
        items=matrix.n_items,
        interactions=matrix.nnz,
        weights=dict(weights),
        notes=notes,
        cold_rows=cold_rows.get("cold", []),
        pipeline=pipeline_info,
    )
    if tune and tuned_weights is not None:
        _tuned_row(report, parts, sources, tuned_weights, cold)
    elif tune:
        _tune(
            report,
            inputs,
            parts,
            sources,
            content,
            config,
            serving_kind,
            seed,
            half_life,
            version,
        )
    return report


def _kept_users(matrix: InteractionMatrix) -> np.ndarray:
    return np.flatnonzero(np.diff(matrix.matrix.indptr) > 0)


def _tuned_row(
    report: EvaluationReport,
    parts: Split,
    sources: Mapping[str, Any],
    weights: Mapping[str, float],
    cold: Mapping[str, np.ndarray],
) -> None:
    """``hybrid(tuned)`` with weights tuned on another split of the same run."""
    cold_rows: dict[str, list[Row]] = {}
    report.rows += evaluate_strategies(
        [BlendStrategy(sources, weights, name="hybrid(tuned)")],
        parts,
        report.k,
        groups=cold,
        group_rows=cold_rows,
    )
    report.cold_rows += cold_rows.get("cold", [])


def _tune(
    report: EvaluationReport,
    inputs: EvaluationInputs,
    parts: Split,
    sources: Mapping[str, Any],
    content: ContentService | None,
    config: CFConfig,
    serving_kind: str,
    seed: int,
    half_life: float,
    version: str | None,
) -> None:
    started = time.perf_counter()
    # Fresh sources: the tuner fits them on its own inner split of the training part.
    fresh: dict[str, Strategy] = {
        "cf": _cf(serving_kind, parts.train.n_items, config, seed),
        "trending": DecayedPopularity(half_life),
    }
    if content is not None:
        fresh["content"] = ContentSimilarity(content)
    result = tune_blend_weights(fresh, parts.train, k=report.k, seed=seed)
    _tuned_row(report, parts, sources, result.weights, {"cold": cold_users(parts.train)})
    report.tuned = {
        "weights": result.weights,
        "validation_ndcg": result.score,
        "trials": len(result.trials),
        "seconds": round(time.perf_counter() - started, 1),
        "saved_to": None,
    }
    if report.data == "store" and version is not None and inputs.cf_store is not None:
        path = inputs.cf_store.save_weights(
            result.weights,
            {
                "metric": result.metric,
                "validation_ndcg": result.score,
                "seed": seed,
                "split": report.split,
                "trials": len(result.trials),
            },
            inputs.weights,
            version,
        )
        report.tuned["saved_to"] = str(path)
    elif report.data == "store":
        report.notes.append("no CF model version: tuned weights not saved (run `tailor train cf`)")
    else:
        report.notes.append("MovieLens weights are not saved: they belong to another catalog")


def evaluate_splits(
    inputs: EvaluationInputs, splits: Sequence[str], *, tune: bool = False, **options: Any
) -> list[EvaluationReport]:
    """:func:`evaluate` on each split kind in turn (same inputs and options). Blend weights are
    tuned (and, for store data, saved) on the first split only; the others evaluate
    ``hybrid(tuned)`` with those weights."""
    reports: list[EvaluationReport] = []
    tuned: Mapping[str, float] | None = None
    for kind in splits:
        report = evaluate(inputs, split=kind, tune=tune, tuned_weights=tuned, **options)
        if report.tuned is not None:
            tuned = report.tuned["weights"]
        reports.append(report)
    return reports

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
Everything is deterministic for a seed (ALS trains single-threaded with that seed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
from recommend.offline.splits import Split, leave_last_n_split, random_split, temporal_split
from recommend.offline.strategies import ContentSimilarity, DecayedPopularity, Fitted
from recommend.popularity import Popularity
from recommend.training import CFStore
from recommend.types import CFConfig, RecommendError

log = logging.getLogger("tailor.evaluate")

DATASETS = ("movielens", "store")
SPLITS = ("random", "temporal", "leave-last-n")
COLUMNS = (
    "strategy",
    "users",
    "precision",
    "recall",
    "ndcg",
    "hit_rate",
    "map",
    "coverage",
    "novelty",
)


@dataclass
class EvaluationReport:
    """What ``tailor evaluate`` prints and writes: one row per strategy plus the context."""

    rows: list[Row]
    data: str
    split: str
    seed: int
    k: int
    users: int
    items: int
    interactions: int
    weights: dict[str, float]
    tuned: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def ndcg(self, strategy: str) -> float:
        return float(next(r["ndcg"] for r in self.rows if r["strategy"] == strategy))

    def as_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "split": self.split,
            "seed": self.seed,
            "k": self.k,
            "users": self.users,
            "items": self.items,
            "interactions": self.interactions,
            "weights": self.weights,
            "tuned": self.tuned,
            "notes": self.notes,
            "rows": self.rows,
        }


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
) -> EvaluationReport:
    """Run the comparison (see the module docstring); ``max_users`` subsamples users first;
    ``only`` names the strategies to report (default: all; ``popularity`` is always kept, as
    the baseline)."""
    data, matrix, content = inputs.data, inputs.matrix, inputs.content
    if data not in DATASETS:
        raise ValueError(f"unknown data {data!r}; one of {DATASETS}")
    if matrix.nnz == 0:
        raise RecommendError(f"no interactions in {data}: import events first")
    if max_users is not None:
        matrix = subsample_users(matrix, max_users, seed)
    parts = make_split(matrix, split, seed, last_n)
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

    if only is not None:
        unknown = set(only) - {s.name for s in strategies}
        if unknown:
            raise RecommendError(f"unknown strategies {sorted(unknown)}")
        keep = {"popularity", *only}
        strategies = [s for s in strategies if s.name in keep]
        # The hybrids reuse their sources' fits; fit those that are not evaluated themselves.
        if "hybrid" in keep or tune:
            for source in sources.values():
                if source.inner not in strategies:
                    source.inner.fit(parts.train)
    rows = evaluate_strategies(strategies, parts, k)
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
    )
    if tune:
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
    rows = evaluate_strategies(
        [BlendStrategy(sources, result.weights, name="hybrid(tuned)")], parts, report.k
    )
    report.rows.extend(rows)
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


def summary_lines(report: EvaluationReport) -> list[str]:
    """The verdict lines under the table: the best strategy against popularity."""
    ndcg = {r["strategy"]: r["ndcg"] for r in report.rows}
    best = max((s for s in ndcg if s != "popularity"), key=lambda s: ndcg[s])
    base = ndcg["popularity"]
    ratio = ndcg[best] / base if base > 0 else float("inf")
    lines = [
        f"best: {best} NDCG@{report.k} {ndcg[best]:.4f} = {ratio:.2f}x popularity ({base:.4f})",
    ]
    if report.tuned:
        where = report.tuned["saved_to"] or "not saved"
        lines.append(
            f"tuned weights {report.tuned['weights']} "
            f"(validation NDCG {report.tuned['validation_ndcg']:.4f}; {where})"
        )
    return lines + [f"note: {n}" for n in report.notes]


def columns(rows: Sequence[Row]) -> list[str]:
    return [c for c in COLUMNS if rows and c in rows[0]]


def write_json(report: EvaluationReport, path: Path) -> None:
    import json

    path.write_text(json.dumps(report.as_json(), indent=2, sort_keys=True), encoding="utf-8")

"""Offline evaluation: several strategies side by side on one split, and a blend-weight tuner.

Protocol: every strategy is fitted on ``split.train``; each user with held-out items gets a
top-k list computed from their training row, excluding their training items; lists are scored
against ``split.test`` with :mod:`recommend.offline.metrics`. Results are a list of dicts (one row per
strategy) with a plain-text renderer and JSON. Everything is deterministic for a given split
(timings are reported only when asked for, since they are not).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from recommend.blend import Normalization, blend_batch
from recommend.interactions import InteractionMatrix
from recommend.offline.metrics import coverage, novelty, ranking_metrics
from recommend.offline.splits import Split, random_split

METRIC_COLUMNS = ("precision", "recall", "ndcg", "hit_rate", "map", "coverage", "novelty")
Row = dict[str, Any]


class Strategy(Protocol):
    """What the evaluator needs; every :class:`recommend.model.ItemModel` qualifies."""

    @property
    def name(self) -> str:
        """Label of the strategy in result tables."""
        ...

    def fit(self, interactions: InteractionMatrix) -> Any:
        """Train on ``interactions``."""
        ...

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, scores)``, both ``(n_rows, k)``: item ints best first, padded with -1."""
        ...


class BlendStrategy:
    """Several strategies blended with fixed weights (see :mod:`recommend.blend`).

    Each source proposes ``candidates`` items per user; lists are normalized and summed with
    ``weights`` exactly as in serving.
    """

    def __init__(
        self,
        sources: Mapping[str, Strategy],
        weights: Mapping[str, float],
        *,
        normalization: Normalization = "rank",
        candidates: int = 100,
        name: str = "blend",
    ) -> None:
        self.sources = dict(sources)
        self.weights = dict(weights)
        self.normalization: Normalization = normalization
        self.candidates = candidates
        self._name = name
        self._n_items = 0

    @property
    def name(self) -> str:
        return self._name

    def fit(self, interactions: InteractionMatrix) -> BlendStrategy:
        for source in self.sources.values():
            source.fit(interactions)
        self._n_items = interactions.n_items
        return self

    def recommend_batch(
        self, user_items: sp.csr_matrix, k: int, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        per_source = {
            name: source.recommend_batch(user_items, self.candidates, exclude_seen=exclude_seen)
            for name, source in self.sources.items()
            if self.weights.get(name, 0.0) > 0
        }
        return blend_batch(
            per_source, self.weights, k, self._n_items, normalization=self.normalization
        )


def evaluate_lists(recommended: np.ndarray, split: Split, k: int) -> dict[str, float]:
    """All metrics of precomputed top-k lists (one row per user of ``split``)."""
    row: dict[str, float] = ranking_metrics(recommended, split.test.matrix, k)
    test_users = np.diff(split.test.matrix.indptr) > 0
    lists = recommended[test_users]
    row["coverage"] = coverage(lists, split.train.n_items)
    row["novelty"] = novelty(lists, split.train.item_user_counts(), split.train.n_users)
    return row


def evaluate_strategies(
    strategies: Sequence[Strategy],
    split: Split,
    k: int = 10,
    *,
    timings: bool = False,
    groups: Mapping[str, np.ndarray] | None = None,
    group_rows: dict[str, list[Row]] | None = None,
) -> list[Row]:
    """Fit and score each strategy on ``split``; one row per strategy, in the given order.

    Rows hold ``strategy``, ``k``, ``users`` and :data:`METRIC_COLUMNS` (plus ``fit_s`` and
    ``recommend_s`` wall-clock seconds with ``timings=True``). ``groups`` maps a name to a
    boolean mask over users (e.g. cold users); the rows of each group's users are appended to
    ``group_rows[name]`` (the same lists, scored on those users only).
    """
    rows: list[Row] = []
    subsets = {name: restrict_users(split, mask) for name, mask in (groups or {}).items()}
    for strategy in strategies:
        started = time.perf_counter()
        strategy.fit(split.train)
        fitted = time.perf_counter()
        ids, _ = strategy.recommend_batch(split.train.matrix, k, exclude_seen=True)
        done = time.perf_counter()
        row = _row(strategy.name, ids, split, k)
        if timings:
            row["fit_s"] = fitted - started
            row["recommend_s"] = done - fitted
        rows.append(row)
        for name, subset in subsets.items():
            if group_rows is not None:
                group_rows.setdefault(name, []).append(_row(strategy.name, ids, subset, k))
    return rows


def _row(name: str, ids: np.ndarray, split: Split, k: int) -> Row:
    metrics = evaluate_lists(ids, split, k)
    row: Row = {"strategy": name, "k": k, "users": int(metrics.pop("users"))}
    row.update({m: metrics[m] for m in METRIC_COLUMNS})
    return row


def restrict_users(split: Split, users: np.ndarray) -> Split:
    """``split`` with only the test entries of the users where ``users`` (a mask) is true."""
    keep = np.asarray(users, dtype=bool)[split.test.entry_users()]
    return Split(split.train, split.test.select(keep))


def render_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """Plain-text table: one line per row, floats with 4 decimals, columns aligned."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    header = "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(columns, widths, strict=True))
    )
    lines = [header, "  ".join("-" * w for w in widths)]
    for line in cells:
        lines.append(
            "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w)
                for i, (v, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join(lines)


def to_json(rows: Sequence[Row]) -> str:
    """Rows as a JSON array (stable key order)."""
    return json.dumps(list(rows), indent=2, sort_keys=True)


# -- weight tuning ---------------------------------------------------------------------


@dataclass(frozen=True)
class TuningResult:
    """Best blend weights found (normalized to sum 1) and every trial, best first."""

    weights: dict[str, float]
    score: float
    metric: str
    trials: list[Row] = field(default_factory=list)


def _weight_vectors(
    names: Sequence[str], grid: Sequence[float], n_trials: int | None, seed: int
) -> list[tuple[float, ...]]:
    """Distinct weight vectors (normalized to sum 1: scaling all weights changes nothing)."""
    if n_trials is None:
        raw: list[tuple[float, ...]] = list(itertools.product(grid, repeat=len(names)))
    else:
        rng = np.random.default_rng(seed)
        raw = [tuple(float(w) for w in rng.choice(grid, size=len(names))) for _ in range(n_trials)]
    vectors: list[tuple[float, ...]] = []
    seen: set[tuple[float, ...]] = set()
    for vec in raw:
        total = sum(vec)
        if total <= 0:
            continue
        normed = tuple(round(w / total, 6) for w in vec)
        if normed not in seen:
            seen.add(normed)
            vectors.append(normed)
    return vectors


def tune_blend_weights(
    sources: Mapping[str, Strategy],
    train: InteractionMatrix,
    *,
    grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0),
    n_trials: int | None = None,
    metric: str = "ndcg",
    k: int = 10,
    candidates: int = 100,
    validation_fraction: float = 0.25,
    normalization: Normalization = "rank",
    seed: int = 0,
    inner: Split | None = None,
) -> TuningResult:
    """Search blend weights on a validation split carved from ``train`` (never the test set).

    ``train`` is split per user at random (``validation_fraction``, ``seed``), or ``inner`` is
    that split (a split of ``train`` of another kind, e.g. the evaluation's own); each source is
    fitted once on the inner part and proposes ``candidates`` items per user; then every weight
    vector — the full ``grid`` product, or ``n_trials`` random draws from it — is scored by
    ``metric`` at ``k``. Ties go to the earlier vector, so the result is deterministic.
    """
    if metric not in METRIC_COLUMNS:
        raise ValueError(f"unknown metric {metric!r}; one of {METRIC_COLUMNS}")
    names = list(sources)
    if inner is None:
        inner = random_split(train, validation_fraction, seed=seed)
    per_source: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, source in sources.items():
        source.fit(inner.train)
        per_source[name] = source.recommend_batch(inner.train.matrix, candidates)
    trials: list[Row] = []
    for vec in _weight_vectors(names, grid, n_trials, seed):
        weights = dict(zip(names, vec, strict=True))
        ids, _ = blend_batch(per_source, weights, k, train.n_items, normalization=normalization)
        trials.append({"weights": weights, metric: evaluate_lists(ids, inner, k)[metric]})
    if not trials:
        raise ValueError("the grid has no weight vector with a positive sum")
    order = sorted(range(len(trials)), key=lambda i: (-trials[i][metric], i))
    ranked = [trials[i] for i in order]
    return TuningResult(
        weights=dict(ranked[0]["weights"]),
        score=float(ranked[0][metric]),
        metric=metric,
        trials=ranked,
    )

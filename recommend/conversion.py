"""Conversion propensity: will this profile purchase within the next ``horizon`` days?

The package's entry points: `train_conversion` (here) fits a scikit-learn
`HistGradientBoostingClassifier` on temporal cutoffs and returns a serving `ConversionModel`;
the public names of the other conversion modules are re-exported from here. One job a module:

* `recommend.conversion_features`: the model's inputs and the replayed, labelled dataset;
* `recommend.conversion_trees`: the fitted trees exported to numpy, verified, and walked;
* `recommend.conversion_model`: `ConversionModel`, serving and its artifact directory;
* `recommend.conversion_store`: `ConversionModelStore`, numbered versions of that artifact;
* this module: training and holdout evaluation.

Training replays the event log once with `ProfileState` and snapshots every known profile at
a series of cutoffs ``T``; a snapshot's features see only events with ``ts < T`` and its label
is "a purchase in ``[T, T + horizon)``". The cutoffs are one horizon apart and end one horizon
before ``now``::

    T_0 = now - n*h   ...   T_(n-2) = now - 2h   T_(n-1) = now - h        now
    |--- train rows: labels in [T_k, T_k + h) ---|-- holdout labels --|
                                                 [T_(n-1), now)

so every training label window closes at or before the holdout cutoff: the holdout's labels
(and its features' newest events) come after every training label, nothing about the holdout
period leaks into training. The fitted trees are exported (and checked against scikit-learn)
by `TreeEnsemble.from_estimator`, so serving and loading never touch scikit-learn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from profiles.state import CategoryLookup
from profiles.types import ConversionModelNotFound, InsufficientTrainingData, ProfileConfig
from recommend.conversion_features import (
    ConversionDataset,
    build_dataset,
    conversion_cutoffs,
    conversion_features,
    feature_names,
    session_features,
)
from recommend.conversion_model import ConversionModel
from recommend.conversion_store import ConversionModelStore
from recommend.conversion_trees import TreeEnsemble
from recommend.types import TreeExportError
from storage.types import EventRecord

# The public names of the conversion modules, importable from here (the errors live with their
# packages' others: profiles/types.py and recommend/types.py).
__all__ = [
    "ConversionDataset",
    "ConversionModel",
    "ConversionModelNotFound",
    "ConversionModelStore",
    "InsufficientTrainingData",
    "TreeEnsemble",
    "TreeExportError",
    "build_dataset",
    "conversion_cutoffs",
    "conversion_features",
    "evaluate",
    "feature_names",
    "session_features",
    "train_conversion",
]

log = logging.getLogger(__name__)


def _classifier(seed: int) -> HistGradientBoostingClassifier:
    # Shallow trees and a slow learning rate: the data are thousands of rows, not millions,
    # and the probabilities are served as scores, so calibration matters more than the
    # last bit of ranking. Early stopping uses a seeded random validation split.
    return HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        max_depth=6,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        categorical_features=None,
        random_state=seed,
    )


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Holdout metrics: ROC-AUC, PR-AUC (average precision), Brier, and the base-rate Brier."""
    base = float(np.mean(y))
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "brier_base_rate": base * (1.0 - base),  # the best constant predictor's Brier
        "base_rate": base,
    }


def train_conversion(
    events: Iterable[EventRecord],
    *,
    horizon_days: float = 7.0,
    config: ProfileConfig,
    categories: CategoryLookup,
    now: float,
    n_cutoffs: int = 6,
    seed: int = 0,
) -> tuple[ConversionModel, dict[str, float]]:
    """Train on the earlier cutoffs, score the latest one; deterministic for a ``seed``.

    ``events`` in timestamp order; ``now`` (UTC epoch s) is the end of the usable log: the
    holdout cutoff is ``now - horizon`` so its label window is complete. Raises
    `InsufficientTrainingData` when the train or holdout rows lack one of the classes, and
    `TreeExportError` when the installed scikit-learn's trees cannot be exported faithfully.
    """
    began = time.perf_counter()
    cutoffs = conversion_cutoffs(now, horizon_days, n_cutoffs)
    data = build_dataset(
        events, cutoffs=cutoffs, horizon_days=horizon_days, config=config, categories=categories
    )
    holdout = data.cutoff_index == len(cutoffs) - 1
    X_tr, y_tr, X_ho, y_ho = data.X[~holdout], data.y[~holdout], data.X[holdout], data.y[holdout]
    for name, y in (("training", y_tr), ("holdout", y_ho)):
        if len(np.unique(y)) < 2:
            raise InsufficientTrainingData(
                f"{name} rows need converters and non-converters: {len(y)} rows, "
                f"{int(y.sum())} positive (log too short for {n_cutoffs} cutoffs "
                f"of {horizon_days} days?)"
            )
    # One OpenMP thread: on a few thousand rows the parallel histogram build loses to its own
    # synchronisation, badly so on a busy shared machine (measured 13 s vs 1 s under load).
    with threadpool_limits(limits=1, user_api="openmp"):
        clf = _classifier(seed).fit(X_tr, y_tr)
    model = ConversionModel(
        # Checked against clf.decision_function on every row the model has seen.
        trees=TreeEnsemble.from_estimator(clf, np.vstack([X_tr, X_ho])),
        feature_names=data.feature_names,
        horizon_days=float(horizon_days),
        config=config,
    )
    metrics = evaluate(y_ho, model.predict_proba(X_ho))
    metrics.update(
        n_train=float(len(y_tr)),
        n_holdout=float(len(y_ho)),
        train_base_rate=float(y_tr.mean()),
        n_trees=float(clf.n_iter_),
        holdout_cutoff=cutoffs[-1],
    )
    model.metrics = metrics
    log.info(
        "conversion model: %d train / %d holdout rows, %d trees, ROC-AUC %.3f, PR-AUC %.3f, "
        "Brier %.4f (base rate %.3f -> %.4f) in %.1fs",
        len(y_tr),
        len(y_ho),
        clf.n_iter_,
        metrics["roc_auc"],
        metrics["pr_auc"],
        metrics["brier"],
        metrics["base_rate"],
        metrics["brier_base_rate"],
        time.perf_counter() - began,
    )
    return model, metrics

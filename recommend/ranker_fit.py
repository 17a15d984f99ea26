"""Fitting the ranker: LightGBM LambdaRank over labelled query groups, exported to numpy trees.

:func:`fit_lambdarank` holds out a fifth of the groups for early stopping and compares, on those
held-out users, the ranker with the blend and with every single source (what ``tailor train
ranker`` prints); it "beats the blend" (and is published) only when its mean gain over the
blend clears one standard error on the held-out users of every fold (``selection_folds``
folds of users, each scored by trees learned from the others with the same number of rounds). :func:`export_trees` turns the
booster into a :class:`~recommend.conversion_trees.TreeEnsemble` through LightGBM's public
``dump_model`` and checks it against LightGBM's own ``predict`` (raw scores), on the training
rows and on rows placed on every split threshold; a disagreement fails training, never serving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from recommend.conversion_trees import TreeEnsemble
from recommend.ranker import Group, RankerParams, lightgbm_zeros
from recommend.ranker_features import BLEND_COLUMN, PER_SOURCE, SOURCES
from recommend.types import RecommendError, TreeExportError


def fit_lambdarank(
    groups: Sequence[Group], params: RankerParams = RankerParams()
) -> tuple[TreeEnsemble, dict[str, Any]]:
    """LambdaRank trees over ``groups`` (groups without a positive label teach nothing and are
    dropped); early stopping on ``params.validation_fraction`` of the groups, and a time budget.

    Returns the exported trees and a summary (groups, rows, rounds, validation NDCG@10).
    Raises ``RecommendError`` when fewer than 10 groups have a positive label."""
    import lightgbm as lgb  # training only: serving walks the exported trees

    useful = [g for g in groups if g.y.size and g.y.max() > 0 and g.X.shape[0] > 1]
    if len(useful) < 10:
        raise RecommendError(
            f"only {len(useful)} users have candidates and a later interaction among them: "
            "too little history to learn a ranker (import more events first)"
        )
    rng = np.random.default_rng(params.seed)
    # Held-out users, not groups: a user's groups from several splits share positives.
    users = sorted({g.user for g in useful})
    n_valid = max(1, int(len(users) * params.validation_fraction))
    order = rng.permutation(np.asarray(users, dtype=object)).tolist()
    # Folds of n_valid users in that order: the first is the early-stopping validation set.
    fold_of = {u: min(i // n_valid, params.selection_folds - 1) for i, u in enumerate(order)}
    fold = np.array([fold_of[g.user] for g in useful])
    is_valid = fold == 0
    if is_valid.all() or not is_valid.any():  # users not told apart: split the groups
        is_valid = np.zeros(len(useful), dtype=bool)
        n_groups = max(1, int(len(useful) * params.validation_fraction))
        is_valid[rng.permutation(len(useful))[:n_groups]] = True
        fold = np.where(is_valid, 0, -1)  # no cross-validation: the one held-out part
    valid, train = np.flatnonzero(is_valid), np.flatnonzero(~is_valid)

    def dataset(ix: np.ndarray, reference: Any = None) -> Any:
        X = np.vstack([useful[i].X for i in ix])
        y = np.concatenate([useful[i].y for i in ix])
        return lgb.Dataset(
            X,
            y,
            group=[len(useful[i].y) for i in ix],
            init_score=params.prior * X[:, BLEND_COLUMN],
            reference=reference,
            free_raw_data=False,
        )

    dtrain = dataset(train)
    dvalid = dataset(valid, dtrain)
    config = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": params.num_leaves,
        "max_depth": params.max_depth,
        "min_data_in_leaf": params.min_data_in_leaf,
        "learning_rate": params.learning_rate,
        "feature_fraction": params.feature_fraction,
        "bagging_fraction": params.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": params.lambda_l2,
        "num_threads": params.threads,
        "seed": params.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    started = time.perf_counter()

    def budget(env: Any) -> None:
        if time.perf_counter() - started > params.budget_s:
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    booster = lgb.train(
        config,
        dtrain,
        num_boost_round=params.rounds,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(params.early_stopping, verbose=False), budget],
    )
    best = int(booster.best_iteration or booster.current_iteration())
    check = np.vstack([dtrain.get_data(), dvalid.get_data()])
    trees = export_trees(booster, best, check)
    held = [useful[i] for i in valid]

    def ranker_score(X: np.ndarray) -> np.ndarray:
        return np.asarray(trees.raw(lightgbm_zeros(X))) + params.prior * X[:, BLEND_COLUMN]

    per_user = {
        "ranker": group_ndcgs(held, ranker_score),
        "blend": group_ndcgs(held, lambda X: X[:, BLEND_COLUMN]),
    }
    for s, name in enumerate(SOURCES):
        column = s * len(PER_SOURCE)  # the source's reciprocal rank
        if any(g.X[:, column].any() for g in held):
            per_user[name] = group_ndcgs(held, _column(column))
    compared = {k: float(v.mean()) if v.size else 0.0 for k, v in per_user.items()}
    # Better than the blend means better beyond the noise of this many held-out users: the
    # mean paired gain must clear one standard error (the one-standard-error rule).
    gain = per_user["ranker"] - per_user["blend"]
    se = float(gain.std(ddof=1) / np.sqrt(gain.size)) if gain.size > 1 else float("inf")
    # The decision pools the held-out users of every fold (each fold's trees learned, with the
    # same number of rounds, from the other folds' users): on a few thousand users, or a few
    # dozen, one fifth of them is too few to tell a real gain from noise.
    cv_gain = [gain]
    for f in range(1, params.selection_folds):
        out, rest = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
        if out.size == 0 or rest.size == 0:
            continue
        booster_f = lgb.train(config, dataset(rest), num_boost_round=best)
        held_f = [useful[i] for i in out]

        def fold_score(X: np.ndarray, b: Any = booster_f) -> np.ndarray:
            raw = b.predict(X, raw_score=True, num_threads=1)
            return np.asarray(raw) + params.prior * X[:, BLEND_COLUMN]

        cv_gain.append(group_ndcgs(held_f, fold_score) - group_ndcgs(held_f, _column(BLEND_COLUMN)))
    pooled = np.concatenate(cv_gain)
    cv_se = float(pooled.std(ddof=1) / np.sqrt(pooled.size)) if pooled.size > 1 else float("inf")
    summary = {
        "groups": len(useful),
        "train_groups": len(train),
        "validation_groups": len(valid),
        "rows": int(check.shape[0]),
        "rounds": best,
        "validation_ndcg@10": {k: round(v, 6) for k, v in compared.items()},
        "gain_over_blend": round(float(gain.mean()), 6) if gain.size else 0.0,
        "gain_standard_error": round(se, 6),
        "cv_folds": len(cv_gain),
        "cv_users": int(pooled.size),
        "cv_gain_over_blend": round(float(pooled.mean()), 6) if pooled.size else 0.0,
        "cv_gain_standard_error": round(cv_se, 6),
        "beats_blend": bool(pooled.size > 1 and pooled.mean() > cv_se),
        "fit_seconds": round(time.perf_counter() - started, 2),
    }
    return trees, summary


def _column(c: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda X: X[:, c]


def group_ndcgs(
    groups: Sequence[Group], score: Callable[[np.ndarray], np.ndarray], k: int = 10
) -> np.ndarray:
    """NDCG@k of each group's candidates ordered by ``score`` (gain 2^label - 1, as
    LambdaRank's; ties by row order; the ideal is the group's own best order)."""
    values = []
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)
    for g in groups:
        s = score(g.X)
        order = np.lexsort((np.arange(len(s)), -s))[:k]
        gains = np.power(2.0, g.y) - 1.0
        ideal = np.sort(gains)[::-1][:k]
        denom = float(ideal @ discounts[: ideal.size])
        if denom > 0:
            values.append(float(gains[order] @ discounts[: order.size]) / denom)
    return np.asarray(values)


def export_trees(booster: Any, rounds: int, check: np.ndarray) -> TreeEnsemble:
    """The first ``rounds`` trees of a LightGBM booster as a :class:`TreeEnsemble`, checked
    against ``booster.predict(raw_score=True)`` on ``check`` plus rows on every threshold."""
    import lightgbm as lgb

    dump = booster.dump_model(num_iteration=rounds)
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise TreeExportError("a ranker has one tree per iteration")
    tree_nodes = [_flatten(t["tree_structure"]) for t in dump["tree_info"]]
    if not tree_nodes:
        tree_nodes = [[(-1, 0.0, 0, 0, 0.0)]]
    width = max(len(n) for n in tree_nodes)
    shape = (len(tree_nodes), width)
    feature = np.zeros(shape, np.int32)
    threshold = np.zeros(shape, np.float64)
    ids = np.broadcast_to(np.arange(width, dtype=np.int32), shape)
    left, right = ids.copy(), ids.copy()
    value = np.zeros(shape, np.float64)
    depth = 0
    for t, nodes in enumerate(tree_nodes):
        for k, (feat, thr, lo, hi, val) in enumerate(nodes):
            if feat >= 0:
                feature[t, k], threshold[t, k], left[t, k], right[t, k] = feat, thr, lo, hi
            else:
                value[t, k] = val
        depth = max(depth, _depth(nodes))
    trees = TreeEnsemble(feature, threshold, np.zeros(shape, bool), left, right, value, 0.0, depth)
    probe = np.nan_to_num(trees._probe_rows(check.shape[1]), nan=0.0)  # serving passes no NaN
    rows = np.vstack([check, probe])
    expected = booster.predict(rows, num_iteration=rounds, raw_score=True, num_threads=1)
    diff = float(np.max(np.abs(trees.raw(lightgbm_zeros(rows)) - expected), initial=0.0))
    if not diff <= 1e-9:  # also catches NaN
        raise TreeExportError(
            f"exported ranker trees disagree with LightGBM {lgb.__version__} by up to {diff:.3g}"
        )
    return replace(
        trees,
        provenance={
            "exported_from": "lightgbm.Booster (lambdarank)",
            "lightgbm": lgb.__version__,
            "checked_rows": int(rows.shape[0]),
            "checked_max_abs_diff": diff,
        },
    )


def _flatten(root: Mapping[str, Any]) -> list[tuple[int, float, int, int, float]]:
    """A dumped tree as ``(feature, threshold, left, right, leaf value)`` nodes in breadth-first
    order (feature -1 on leaves, which point at themselves); only numerical ``<=`` splits whose
    missing values are NaN or none (serving passes no NaN)."""
    nodes: list[tuple[int, float, int, int, float]] = []
    queue: list[Mapping[str, Any]] = [root]
    while queue:
        node = queue.pop(0)
        here = len(nodes)
        if "leaf_value" in node:
            nodes.append((-1, 0.0, here, here, float(node["leaf_value"])))
            continue
        if node.get("decision_type") != "<=" or node.get("missing_type") == "Zero":
            raise TreeExportError(
                f"unsupported ranker split {node.get('decision_type')!r} "
                f"(missing type {node.get('missing_type')!r})"
            )
        # Children are numbered after every node already queued (breadth-first order).
        lo = here + len(queue) + 1
        nodes.append((int(node["split_feature"]), float(node["threshold"]), lo, lo + 1, 0.0))
        queue += [node["left_child"], node["right_child"]]
    return nodes


def _depth(nodes: Sequence[tuple[int, float, int, int, float]]) -> int:
    best, stack = 0, [(0, 0)]
    while stack:
        k, d = stack.pop()
        feat, _thr, lo, hi, _v = nodes[k]
        if feat < 0:
            best = max(best, d)
        else:
            stack += [(lo, d + 1), (hi, d + 1)]
    return best

"""Recommendation quality on MovieLens ml-latest-small: CF models vs the popularity baseline, and
the default answer (tuned CF + tuned blend + learned ranker) vs every single strategy.

    python benchmarks/recommend_quality.py            # full: table, sweep, tuned blend, default
    python benchmarks/recommend_quality.py --quick    # 300 users, table only (~20 s)
    python benchmarks/recommend_quality.py --json out.json
    python benchmarks/recommend_quality.py --default-only   # just the default-answer sections

Protocol: every rating is an implicit interaction (weight 1); per-user random 75/25
split with a fixed seed; top-k excluding each user's training items; metrics with binary
relevance on the held-out items, averaged over users. The target line compares the best CF
model's NDCG@10 with popularity measured in the same run (target: >= 0.37 and >= 1.8x).
Timings are wall-clock on a shared machine: read them as ratios, not absolutes.

Default answer (issue: "a learned ranker that beats its best part"): ``tailor evaluate
--ranker`` through the library, on the same protocol — CF setting and rating curve tuned, blend
weights tuned and a LambdaRank ranker learned on the training part only; the default is the
ranker when it beat the tuned blend on its own validation users, else the tuned blend. It sees
the ratings as an imported ``rate`` event weighs them (value / 5; the baselines the fact of
rating, over the same entries and split). Targets: default >= 0.39 NDCG@10, above EASE and every
single strategy of the same run. Then the demo world (``tailor demo``'s generator, smaller):
the default above every single strategy on the random and the leave-last-n split, and above
trending for cold users (1-3 training interactions); the conversion model's holdout ROC-AUC is
printed beside it.
Data: ``$TAILOR_DATASETS_DIR/ml-latest-small`` (default ``../shared/data`` beside the checkout;
not the gateway's ``TAILOR_DATA_DIR``); see docs/DATA.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommend.cf import ALS, EASE, ItemKNN
from recommend.interactions import InteractionMatrix
from recommend.offline.evaluate import (
    BlendStrategy,
    Strategy,
    evaluate_strategies,
    render_table,
    to_json,
    tune_blend_weights,
)
from recommend.offline.movielens import load_movielens
from recommend.offline.report import EvaluationReport
from recommend.offline.splits import random_split
from recommend.popularity import Popularity

COLUMNS = ["strategy", "users", "precision", "recall", "ndcg", "hit_rate", "map"]
COLUMNS += ["coverage", "novelty", "fit_s", "recommend_s"]


def subsample_users(data: InteractionMatrix, n_users: int, seed: int) -> InteractionMatrix:
    """Keep the interactions of ``n_users`` random users (same item catalog)."""
    keep_users = np.random.default_rng(seed).choice(data.n_users, size=n_users, replace=False)
    mask = np.isin(data.entry_users(), keep_users)
    rows = list(data.select(mask).rows())
    return InteractionMatrix.from_rows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 users, no sweep, no tuning")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--lambdas", default="100,200,500", help="extra EASE lambdas to sweep")
    parser.add_argument("--json", type=Path, help="also write all rows as JSON here")
    parser.add_argument("--default-only", action="store_true", help="only the default answer")
    parser.add_argument("--demo-users", type=int, default=400, help="demo world size (users)")
    parser.add_argument("--demo-items", type=int, default=1000, help="demo world size (items)")
    args = parser.parse_args()
    if args.default_only:
        default_answer_movielens(args.seed, args.k)
        default_answer_demo(args.demo_users, args.demo_items, args.k)
        return

    started = time.perf_counter()
    data = load_movielens()
    if args.quick:
        data = subsample_users(data, 300, args.seed)
    split = random_split(data, 0.25, seed=args.seed)
    print(
        f"ml-latest-small: {data.n_users} users, {data.n_items} items, {data.nnz} interactions; "
        f"train {split.train.nnz} / test {split.test.nnz} (per-user random 75/25, seed "
        f"{args.seed}); loaded in {time.perf_counter() - started:.1f}s\n"
    )

    def als() -> ALS:
        return ALS(factors=32, iterations=10, regularization=1.0, alpha=2.0, seed=args.seed)

    strategies: list[Strategy] = [Popularity(), ItemKNN(neighbours=100), EASE(300.0), als()]
    rows = evaluate_strategies(strategies, split, args.k, timings=True)
    print(render_table(rows, COLUMNS))

    ndcg = {row["strategy"]: row["ndcg"] for row in rows}
    best = max(("knn", "ease", "als"), key=lambda name: ndcg[name])
    ratio = ndcg[best] / ndcg["popularity"]
    ok = ndcg[best] >= 0.37 and ratio >= 1.8
    verdict = "MET" if ok else "MISSED"
    if args.quick:
        verdict += "; the target is defined on all 671 users, run without --quick"
    print(
        f"\nNDCG@{args.k}: best CF = {best} {ndcg[best]:.4f}, popularity "
        f"{ndcg['popularity']:.4f} -> {ratio:.2f}x popularity "
        f"(target >= 0.37 and >= 1.8x: {verdict})"
    )
    fit = {row["strategy"]: row["fit_s"] for row in rows}
    print(
        f"fit time vs item-kNN (same run): EASE {fit['ease'] / fit['knn']:.1f}x, "
        f"ALS {fit['als'] / fit['knn']:.1f}x"
    )

    if not args.quick:
        lambdas = [float(x) for x in args.lambdas.split(",") if x]
        sweep = evaluate_strategies([EASE(lam) for lam in lambdas], split, args.k)
        for lam, row in zip(lambdas, sweep, strict=True):
            row["strategy"] = f"ease(lambda={lam:g})"
        sweep.append({**next(r for r in rows if r["strategy"] == "ease")})
        sweep[-1]["strategy"] = "ease(lambda=300)"
        print("\nEASE lambda sweep:")
        print(render_table(sweep, COLUMNS[:9]))
        rows += sweep

        t0 = time.perf_counter()
        sources: dict[str, Strategy] = {"ease": EASE(300.0), "als": als(), "pop": Popularity()}
        tuned = tune_blend_weights(sources, split.train, k=args.k, seed=args.seed)
        print(
            f"\nblend weights tuned on a validation split of train "
            f"({len(tuned.trials)} trials, {time.perf_counter() - t0:.0f}s): {tuned.weights} "
            f"(validation NDCG@{args.k} {tuned.score:.4f})"
        )
        blend_rows = evaluate_strategies(
            [BlendStrategy(sources, tuned.weights, name="blend(tuned)")], split, args.k
        )
        print(render_table(blend_rows, COLUMNS[:9]))
        print(
            f"tuned blend vs EASE alone (test NDCG@{args.k}): "
            f"{blend_rows[0]['ndcg'] / ndcg['ease']:.3f}x"
        )
        rows += blend_rows

        rows += default_answer_movielens(args.seed, args.k)
        default_answer_demo(args.demo_users, args.demo_items, args.k)

    if args.json:
        args.json.write_text(to_json(rows), encoding="utf-8")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


SINGLE = ("popularity", "ease", "knn", "als", "trending", "content", "cf(tuned)")


def verdict(report: EvaluationReport, *, target: float | None = None) -> str:
    """The default answer against the best single strategy (and ``target``), same run."""
    ndcg = {r["strategy"]: r["ndcg"] for r in report.rows}
    singles = [s for s in SINGLE if s in ndcg]
    best = max(singles, key=lambda s: ndcg[s])
    default = ndcg["default"]
    lines = [
        f"default ({(report.pipeline or {}).get('default')}) NDCG@{report.k} {default:.4f} vs "
        f"best single {best} {ndcg[best]:.4f} = {default / ndcg[best]:.3f}x; vs EASE "
        f"{ndcg['ease']:.4f} = {default / ndcg['ease']:.3f}x: "
        + ("ABOVE every single strategy" if default > ndcg[best] else "NOT above every single")
    ]
    if target is not None:
        lines.append(f"target default >= {target}: {'MET' if default >= target else 'MISSED'}")
    cold = {r["strategy"]: r for r in report.cold_rows}
    if cold.get("default", {}).get("users"):
        d, t = cold["default"]["ndcg"], cold["trending"]["ndcg"]
        lines.append(
            f"cold users ({cold['default']['users']}): default {d:.4f} vs trending {t:.4f} = "
            f"{d / max(t, 1e-12):.2f}x: {'ABOVE' if d > t else 'NOT above'}"
        )
    return "\n".join(lines)


def default_answer_movielens(seed: int, k: int) -> list[dict[str, object]]:
    from recommend.engine import DEFAULT_WEIGHTS
    from recommend.offline.harness import EvaluationInputs, evaluate
    from recommend.offline.movielens import load_movie_genres, load_movielens_ratings
    from recommend.ranker_features import ItemFacts
    from recommend.types import CFConfig

    t0 = time.perf_counter()
    ratings, genres = load_movielens_ratings(), load_movie_genres()
    inputs = EvaluationInputs(
        data="movielens",
        matrix=ratings.binary,
        served=ratings.served,
        variants=ratings.variants,
        facts=ItemFacts(categories=lambda i: genres.get(i, ())),
        cf_config=CFConfig(),
        half_life_s=48 * 3600.0,
        weights=DEFAULT_WEIGHTS,
    )
    report = evaluate(inputs, split="random", k=k, seed=seed, ranker=True)
    print(f"\ndefault answer on ml-latest-small, random 75/25 ({time.perf_counter() - t0:.0f}s):")
    print(render_table(report.rows, COLUMNS[:9]))
    print(verdict(report, target=0.39))
    print(f"pipeline: {report.pipeline}")
    return list(report.rows)


def default_answer_demo(n_users: int, n_items: int, k: int) -> None:
    import tempfile

    from gateway.cli.demo_world import load_demo_world
    from gateway.cli.train import evaluation_inputs
    from gateway.settings import load_settings
    from recommend.offline.harness import evaluate_splits

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={},
            data_dir=Path(tmp) / "var",
            encoder="hashing",
            jwt_secret="benchmark-secret-0123456789abcdef0123",
        )
        info = load_demo_world(settings, seed=7, n_users=n_users, n_items=n_items)
        reports = evaluate_splits(
            evaluation_inputs(settings, "store"), ["random", "leave-last-n"], k=k, ranker=True
        )
    conversion = info["conversion"] or {}
    print(
        f"\ndemo world: {n_users} users, {n_items} items, {info['events']} events "
        f"({time.perf_counter() - t0:.0f}s); conversion holdout ROC-AUC "
        f"{conversion.get('roc_auc', float('nan')):.4f}"
    )
    for report in reports:
        print(f"\nsplit {report.split}:")
        print(render_table(report.rows, COLUMNS[:9]))
        print(verdict(report))


if __name__ == "__main__":
    main()

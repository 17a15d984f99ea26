"""`tailor` commands: train, segments, evaluate."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from gateway.cli.common import Common, console, open_services, progress_bar, settings_from
from gateway.settings import Settings
from recommend.offline.harness import EvaluationInputs
from resolvers.context import Services


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "train",
        help="build model artifacts (a running gateway swaps to them)",
        description="Build a new version of a model artifact under the data dir. "
        "A running gateway picks it up atomically, without a restart. "
        "conversion: purchase propensity within TAILOR_CONVERSION_HORIZON_DAYS "
        "(prints holdout ROC-AUC, PR-AUC and Brier score). "
        "cf tunes its parameters and the blend weights on a validation split (--budget); "
        "ranker learns to order the sources' candidates from a time split of the events.",
    )
    p.add_argument(
        "what",
        choices=["index", "cf", "ranker", "conversion", "segments"],
        help="index: item embeddings + FAISS; cf: collaborative filtering; ranker: the learned "
        "second stage (LightGBM LambdaRank; needs a CF model); segments: clustering",
    )
    p.add_argument(
        "--kind",
        choices=["auto", "ease", "knn", "als"],
        help="cf: the model (default: TAILOR_CF_KIND, auto = by catalog size)",
    )
    p.add_argument("--seed", type=int, default=0, help="cf, ranker, conversion: training seed")
    p.add_argument(
        "--budget",
        type=float,
        help="cf: seconds for tuning (CF setting, then blend weights; 0: none; default "
        "TAILOR_CF_TUNE_BUDGET_S, 60); "
        "ranker: seconds for boosting (default 120)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="ranker: publish it even when it does not beat the tuned blend on validation",
    )
    p.add_argument(
        "--engine",
        choices=["python", "spark"],
        default="python",
        help="cf, segments: python (in process, the default) or spark (Apache Spark MLlib on "
        "the Parquet lake; needs the spark extra and Java 17+, see docs/LAKE.md)",
    )
    p.add_argument(
        "--master", help="--engine spark: local[N] or a cluster URL (default: TAILOR_SPARK_MASTER)"
    )
    p.add_argument(
        "--lake",
        help="--engine spark: train on this existing lake instead of exporting the store to "
        "TAILOR_LAKE_DIR (default <data dir>/lake) first",
    )
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("segments", help="segment reports")
    ssub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = ssub.add_parser(
        "report", help="a self-contained HTML page (and JSON) about the segment model"
    )
    r.add_argument(
        "--out", default="segments.html", help="HTML file to write (default segments.html)"
    )
    r.add_argument("--json", dest="json_out", help="JSON file (default: next to --out)")
    common(r)
    r.set_defaults(func=cmd_segments_report)

    p = sub.add_parser(
        "evaluate",
        help="compare recommendation strategies offline",
        description="Every strategy (popularity, EASE, kNN, ALS, trending, content, "
        "hybrid) on one split, side by side: precision, recall, NDCG, hit rate, MAP "
        "at k, coverage and novelty. Deterministic for a seed.",
    )
    p.add_argument(
        "--data",
        choices=["movielens", "store"],
        default="movielens",
        help="movielens: ml-latest-small from TAILOR_DATASETS_DIR; store: the event log",
    )
    p.add_argument(
        "--split",
        type=split_list,
        default=["random", "leave-last-n"],
        help="comma-separated, each reported in turn (default random,leave-last-n): random: "
        "per user 75/25; temporal: newest 20%% held out; leave-last-n: per user (a time split)",
    )
    p.add_argument("--last-n", type=int, default=1, help="leave-last-n: entries held out per user")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-users", type=int, help="evaluate a random subset of users (quicker)")
    p.add_argument(
        "--strategies",
        help="comma-separated subset, e.g. ease,hybrid (popularity "
        "is always shown): popularity, ease, knn, als, trending, content, hybrid; "
        "cf(tuned), blend(tuned), ranker, default (the default answer, see --ranker); and "
        "spark-als (ALS trained on Apache Spark, on the same split; needs the spark extra)",
    )
    p.add_argument("--json", help="also write the table and context as JSON here")
    p.add_argument("--html", help="also write a self-contained HTML report here")
    p.add_argument(
        "--ranker",
        action="store_true",
        help="also evaluate the default answer: CF and blend tuned, and a ranker learned, on "
        "the training part (automatic for store data that has a ranker); rows cf(tuned), "
        "blend(tuned), ranker, default",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=600.0,
        help="--ranker: a cap in seconds on CF tuning (default 600; the search also ends after "
        "12 trials, so that the figures do not depend on the machine's load)",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="tune blend weights on a validation split; store data: save them next to "
        "the newest CF model version (the gateway then serves them)",
    )
    common(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.models import train_cf, train_conversion_model
    from gateway.wiring import cf_config, model_stores

    if args.engine == "spark":
        from gateway.cli.lake import cmd_train_spark

        code = cmd_train_spark(args)
        if code == 0:
            from gateway.wiring import announce_models

            announce_models(settings_from(args), {})  # the fleet loads it now, not at a poll
        return code
    settings = settings_from(args)
    with open_services(settings) as services:
        started = time.perf_counter()
        if args.what == "index":
            items = services.catalog.all_items()
            if not items:
                console.print("[red]the catalog is empty: import items first[/red]")
                return 1
            with progress_bar("encode items", len(items)) as advance:
                version = services.content.build(items, progress=advance)
            console.print(
                f"index {version}: {len(items)} items in {time.perf_counter() - started:.1f}s "
                f"(a running gateway swaps to it within {settings.model_poll_s:g}s)"
            )
        elif args.what == "segments":
            with progress_bar("train segments"):
                model = services.segments.train()
            console.print(
                f"segments {services.segments.version}: {model.k} clusters "
                f"({settings.segment_algorithm}) in {time.perf_counter() - started:.1f}s"
            )
            for seg in services.segments.all_segments():
                console.print(f"  {seg.id:>12}  {seg.size:>7}  {seg.name}")
        elif args.what == "cf":
            with progress_bar("train collaborative filtering"):
                version, info = train_cf(
                    services,
                    model_stores(settings),
                    config=cf_config(settings, args.kind),
                    tune_budget_s=args.budget,
                    seed=args.seed,
                )
            console.print(
                f"CF model {version}: {info['kind']}, {info['users']} users, {info['items']} items, "
                f"{info['interactions']} interactions in {info['seconds']}s"
            )
            print("\n".join(cf_summary(info)), flush=True)
        elif args.what == "ranker":
            code = train_ranker_command(services, settings, args)
            if code == 0:
                announce(settings, services)
            return code
        elif args.what == "conversion":
            from profiles.types import InsufficientTrainingData
            from recommend.types import TreeExportError

            try:
                with progress_bar("train conversion propensity"):
                    version, m = train_conversion_model(
                        services, model_stores(settings), seed=args.seed
                    )
            except InsufficientTrainingData as exc:
                console.print(f"[red]{exc}[/red]")
                return 1
            except TreeExportError as exc:
                console.print(f"[red]cannot export the conversion model: {exc}[/red]")
                return 1
            console.print(
                f"conversion model {version}: horizon {settings.conversion_horizon_days:g} days, "
                f"{m['n_train']:.0f} train / {m['n_holdout']:.0f} holdout profiles, "
                f"{m['n_trees']:.0f} trees in {time.perf_counter() - started:.1f}s"
            )
            # Plain print: the holdout figures are the command's result (scripts parse them).
            print(
                f"holdout: ROC-AUC {m['roc_auc']:.4f}  PR-AUC {m['pr_auc']:.4f} "
                f"(base rate {m['base_rate']:.4f})  Brier {m['brier']:.4f} "
                f"(base-rate Brier {m['brier_base_rate']:.4f})",
                flush=True,
            )
        announce(settings, services)
        return 0


def announce(settings: Settings, services: Services) -> None:
    """With a shared tier (``redis_url``), tell the fleet's gateways to load what was just
    written now rather than at their next poll."""
    from gateway.models import serving_versions
    from gateway.wiring import announce_models

    if not settings.redis_url:
        return
    if announce_models(settings, serving_versions(services)):
        console.print("announced the new version to the fleet (redis)")
    else:
        console.print("[yellow]redis unreachable: gateways load it at their next poll[/yellow]")


def cmd_segments_report(args: argparse.Namespace) -> int:
    from profiles.state import ProfileState
    from segments.report import render_report
    from segments.service import segment_inputs

    settings = settings_from(args)
    with open_services(settings) as services:
        seg = services.segments
        seg.load_latest()
        if seg.model is None:
            console.print("[red]no segment model yet: run `tailor train segments`[/red]")
            return 1
        now = services.clock()
        rows = [
            (
                key,
                segment_inputs(
                    ProfileState.from_json(services.store.get_profile_state(key)),
                    now,
                    services.profile_config,
                )[0],
            )
            for key in services.store.iter_profile_keys()
        ]
        out = Path(args.out)
        json_out = Path(args.json_out) if args.json_out else out.with_suffix(".json")
        render_report(seg.model, rows, out, json_out)
        console.print(f"wrote {out} and {json_out} ({len(rows)} profiles, model {seg.version})")
        return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recommend.offline.harness import evaluate_splits, write_json
    from recommend.offline.report import render_html, render_text
    from recommend.types import RecommendError

    settings = settings_from(args)
    started = time.perf_counter()
    only = args.strategies.split(",") if args.strategies else None
    spark = only is not None and "spark-als" in only
    if spark:
        from gateway.cli.lake import spark_missing

        if spark_missing():
            return 2
    try:
        with progress_bar(f"evaluate {args.data}"):
            inputs = evaluation_inputs(settings, args.data)
            reports = evaluate_splits(
                inputs,
                args.split,
                k=args.k,
                seed=args.seed,
                last_n=args.last_n,
                tune=args.tune,
                max_users=args.max_users,
                only=[s for s in only if s != "spark-als"] if only is not None else None,
                ranker=True if args.ranker else None,
                budget_s=args.budget,
            )
        if spark:
            from gateway.cli.lake import spark_evaluation_row

            for report in reports:
                one = argparse.Namespace(**{**vars(args), "split": report.split})
                report.rows.append(spark_evaluation_row(settings, inputs, one))
    except RecommendError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    report = reports[0]
    console.print(
        f"{args.data}: {report.users} users, {report.items} items, {report.interactions} "
        f"interactions; split {','.join(args.split)} (seed {args.seed}); top-{args.k} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    print(render_text(reports), flush=True)
    if args.json:
        write_json(reports, Path(args.json))
    if args.html:
        render_html(reports, Path(args.html))
        console.print(f"wrote {args.html}")
    return 0


def split_list(value: str) -> list[str]:
    """``--split``: one or more split kinds, comma-separated."""
    from recommend.offline.report import SPLITS

    kinds = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [k for k in kinds if k not in SPLITS]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown split {', '.join(unknown) or value!r}; one or more of {', '.join(SPLITS)}"
        )
    return kinds


def cf_summary(info: dict[str, Any]) -> list[str]:
    """What ``tailor train cf`` chose, for the console."""
    lines = []
    tuning = info.get("tuning")
    if tuning:
        lines.append(
            f"tuned on a validation split ({len(tuning['trials'])} trials, "
            f"{tuning['seconds']}s): {tuning['chosen']} (validation NDCG@10 "
            f"{tuning['validation_ndcg@10']:.4f})"
        )
    blend = info.get("blend")
    if blend:
        lines.append(
            f"blend weights tuned: validation NDCG@10 {blend['validation_ndcg']:.4f} "
            f"({blend['trials']} trials; served with this version)"
        )
    return lines


def train_ranker_command(services: Services, settings: Settings, args: argparse.Namespace) -> int:
    from gateway.models import train_ranker
    from gateway.wiring import model_stores
    from recommend.types import RecommendError

    started = time.perf_counter()
    try:
        version, info = train_ranker(
            services, model_stores(settings), budget_s=args.budget, seed=args.seed, force=args.force
        )
    except RecommendError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    scores = info["validation_ndcg@10"]
    compared = "  ".join(f"{name} {value:.4f}" for name, value in scores.items())
    # Plain print: the validation figures are the command's result (scripts parse them).
    print(
        f"validation NDCG@10 on {info['validation_groups']} held-out users: {compared}",
        flush=True,
    )
    if "cv_users" in info:
        print(
            f"gain over the blend on the held-out users of {info['cv_folds']} folds "
            f"({info['cv_users']} users): {info['cv_gain_over_blend']:+.4f} "
            f"(standard error {info['cv_gain_standard_error']:.4f})",
            flush=True,
        )
    if version is None:
        console.print(
            "[yellow]the ranker does not beat the tuned blend on validation: not published "
            "(the blend keeps ordering; --force publishes it anyway)[/yellow]"
        )
        return 0
    console.print(
        f"ranker {version}: {info['groups']} users, {info['rounds']} rounds, cut at "
        f"{info['cutoff']:.0f} in {time.perf_counter() - started:.1f}s "
        f"(a running gateway swaps to it within {settings.model_poll_s:g}s)"
    )
    return 0


def evaluation_inputs(settings: Settings, data: str) -> EvaluationInputs:
    """The interactions and serving configuration ``tailor evaluate`` runs on: MovieLens, or
    the store's event log with its serving item index and CF versions."""
    from gateway.wiring import blend_weights, cf_config, model_stores
    from recommend.cf_tuning import RATING_CURVES
    from recommend.offline.movielens import load_movie_genres, load_movielens_ratings
    from recommend.ranker_features import ItemFacts
    from recommend.training import interaction_matrix

    common = dict(
        cf_config=cf_config(settings),
        half_life_s=settings.trending_half_life_h * 3600.0,
        weights=blend_weights(settings),
    )
    if data != "store":
        ratings = load_movielens_ratings()
        genres = load_movie_genres()
        return EvaluationInputs(
            data=data,
            matrix=ratings.binary,
            served=ratings.served,
            variants=ratings.variants,
            facts=ItemFacts(categories=lambda i: genres.get(i, ())),
            **common,  # type: ignore[arg-type]
        )
    stores = model_stores(settings)
    with open_services(settings) as services:
        events = list(services.store.iter_events())
        matrix = interaction_matrix(events, services.profile_config)
        variants = {"linear": matrix}
        if any(ev.type == "rate" for ev in events):
            for curve in RATING_CURVES[1:]:
                variants[curve] = interaction_matrix(events, services.profile_config, rating=curve)
        content = None
        if services.content.store.latest() is not None:
            services.content.load_latest()
            content = services.content
        items = {it.id: it for it in services.catalog.all_items()}
    return EvaluationInputs(
        data=data,
        matrix=matrix,
        content=content,
        cf_store=stores.cf,
        variants=variants,
        facts=ItemFacts(
            categories=lambda i: items[i].categories if i in items else (),
            price=lambda i: items[i].price if i in items else None,
            similarity=content.similarity if content is not None else ItemFacts().similarity,
        ),
        has_ranker=stores.ranker.latest() is not None,
        **common,  # type: ignore[arg-type]
    )

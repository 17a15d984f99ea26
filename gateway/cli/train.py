"""`tailor` commands: train, segments, evaluate."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gateway.cli.common import Common, console, open_services, settings_from
from gateway.settings import Settings
from recommend.offline.harness import EvaluationInputs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "train",
        help="build model artifacts (a running gateway swaps to them)",
        description="Build a new version of a model artifact under the data dir. "
        "A running gateway picks it up atomically, without a restart. "
        "conversion: purchase propensity within TAILOR_CONVERSION_HORIZON_DAYS "
        "(prints holdout ROC-AUC, PR-AUC and Brier score).",
    )
    p.add_argument(
        "what",
        choices=["index", "cf", "conversion", "segments"],
        help="index: item embeddings + FAISS; cf: collaborative filtering; segments: clustering",
    )
    p.add_argument(
        "--kind",
        choices=["auto", "ease", "knn", "als"],
        help="cf: the model (default: TAILOR_CF_KIND, auto = by catalog size)",
    )
    p.add_argument("--seed", type=int, default=0, help="conversion: training seed")
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
        choices=["random", "temporal", "leave-last-n"],
        default="random",
        help="random: per user 75/25; temporal: newest 20%% held out; leave-last-n: per user",
    )
    p.add_argument("--last-n", type=int, default=1, help="leave-last-n: entries held out per user")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-users", type=int, help="evaluate a random subset of users (quicker)")
    p.add_argument(
        "--strategies",
        help="comma-separated subset, e.g. ease,hybrid (popularity "
        "is always shown): popularity, ease, knn, als, trending, content, hybrid",
    )
    p.add_argument("--json", help="also write the table and context as JSON here")
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

    settings = settings_from(args)
    with open_services(settings) as services:
        started = time.perf_counter()
        if args.what == "index":
            items = services.catalog.all_items()
            if not items:
                console.print("[red]the catalog is empty: import items first[/red]")
                return 1
            version = services.content.build(items, show_progress=console.is_terminal)
            console.print(
                f"index {version}: {len(items)} items in {time.perf_counter() - started:.1f}s "
                f"(a running gateway swaps to it within {settings.model_poll_s:g}s)"
            )
        elif args.what == "segments":
            model = services.segments.train()
            console.print(
                f"segments {services.segments.version}: {model.k} clusters "
                f"({settings.segment_algorithm}) in {time.perf_counter() - started:.1f}s"
            )
            for seg in services.segments.all_segments():
                console.print(f"  {seg.id:>12}  {seg.size:>7}  {seg.name}")
        elif args.what == "cf":
            version, info = train_cf(
                services, model_stores(settings), config=cf_config(settings, args.kind)
            )
            console.print(
                f"CF model {version}: {info['kind']}, {info['users']} users, {info['items']} items, "
                f"{info['interactions']} interactions in {info['seconds']}s"
            )
        elif args.what == "conversion":
            from profiles.types import InsufficientTrainingData
            from recommend.types import TreeExportError

            try:
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
        return 0


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
    from recommend.offline.evaluate import render_table
    from recommend.offline.harness import columns, evaluate, summary_lines, write_json
    from recommend.types import RecommendError

    settings = settings_from(args)
    started = time.perf_counter()
    try:
        report = evaluate(
            evaluation_inputs(settings, args.data),
            split=args.split,
            k=args.k,
            seed=args.seed,
            last_n=args.last_n,
            tune=args.tune,
            max_users=args.max_users,
            only=args.strategies.split(",") if args.strategies else None,
        )
    except RecommendError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    console.print(
        f"{args.data}: {report.users} users, {report.items} items, {report.interactions} "
        f"interactions; split {args.split} (seed {args.seed}); top-{args.k} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    print(render_table(report.rows, columns(report.rows)))
    print("\n".join(summary_lines(report)), flush=True)
    if args.json:
        write_json(report, Path(args.json))
    return 0


def evaluation_inputs(settings: Settings, data: str) -> EvaluationInputs:
    """The interactions and serving configuration ``tailor evaluate`` runs on: MovieLens, or
    the store's event log with its serving item index and CF versions."""
    from gateway.wiring import blend_weights, cf_config, model_stores
    from recommend.offline.movielens import load_movielens
    from recommend.training import interaction_matrix

    common = dict(
        cf_config=cf_config(settings),
        half_life_s=settings.trending_half_life_h * 3600.0,
        weights=blend_weights(settings),
    )
    if data != "store":
        return EvaluationInputs(data=data, matrix=load_movielens(), **common)  # type: ignore[arg-type]
    with open_services(settings) as services:
        matrix = interaction_matrix(services.store.iter_events(), services.profile_config)
        content = None
        if services.content.store.latest() is not None:
            services.content.load_latest()
            content = services.content
    return EvaluationInputs(
        data=data,
        matrix=matrix,
        content=content,
        cf_store=model_stores(settings).cf,
        **common,  # type: ignore[arg-type]
    )

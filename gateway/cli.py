"""The ``tailor`` command line: serve, demo, import, token, profiles.

Exit codes: 0 success, 1 the command ran but found problems (e.g. rejected rows), 2 bad usage or
input that could not be read at all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from resolvers.context import Services

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; silent (summary only) when output is not a terminal."""
    if not console.is_terminal:
        yield lambda _n: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@contextlib.contextmanager
def open_services(settings: Settings) -> Iterator[Services]:
    """The domain services over the data dir, for one command; the store is closed after."""
    from gateway.app import build_services

    services = build_services(settings)
    try:
        yield services
    finally:
        services.store.close()


def _count_lines(path: Path) -> int | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        return None
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: getattr(args, k, None)
        for k in ("data_dir", "host", "port")
        if getattr(args, k, None) is not None
    }
    return load_settings(getattr(args, "config", None), **overrides)


# ---------------------------------------------------------------------- commands
def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    import uvicorn

    from gateway.app import create_app

    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


def cmd_import(args: argparse.Namespace) -> int:
    from catalog.importer import import_items
    from catalog.types import ImportRejected
    from profiles.imports import import_events, import_transactions, import_users
    from storage.files import parse_mapping

    settings = _settings(args)
    path = Path(args.file)
    mapping = parse_mapping(args.map)
    with open_services(settings) as services:
        total = _count_lines(path) if path.is_file() else None
        with progress_bar(f"import {args.kind}", total) as advance:
            if args.kind == "items":
                try:
                    report = import_items(
                        services.store,
                        path,
                        fmt=args.format,
                        mapping=mapping,
                        skip_invalid=args.skip_invalid,
                        progress=advance,
                    )
                except ImportRejected as exc:
                    console.print(f"[red]{exc}[/red]")
                    console.print(f"every rejected row with its reason: {exc.report.rejects_file}")
                    return 1
                console.print(report.summary())
                return 0 if report.ok else 1
            if args.kind == "users":
                summary = import_users(
                    services.store,
                    path,
                    fmt=args.format,
                    mapping=mapping,
                    now=time.time(),
                    progress=advance,
                )
            elif args.kind == "transactions":
                summary = import_transactions(
                    services.ingest, path, fmt=args.format, mapping=mapping, progress=advance
                )
            else:
                summary = import_events(
                    services.ingest,
                    path,
                    fmt=args.format,
                    mapping=mapping,
                    default_type=args.type,
                    id_prefix=args.id_prefix or "",
                    progress=advance,
                )
        console.print(summary.summary())
        return 1 if summary.rejected else 0


def cmd_token(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token
    from storage.fields import FieldError, ident

    settings = _settings(args)
    try:
        ident({"user": args.user}, "user")
    except FieldError as exc:
        console.print(f"[red]--user {exc.reason}[/red]")
        return 2
    print(
        issue_token(
            settings.jwt_secret,
            args.user,
            scopes=args.scope or [],
            ttl_s=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with open_services(settings) as services:
        with progress_bar("rebuild profiles", services.store.count_events()) as advance:
            started = time.perf_counter()
            n = services.ingest.rebuild_profiles(progress=advance)
        console.print(
            f"rebuilt {n} profiles from {services.store.count_events()} events "
            f"in {time.perf_counter() - started:.1f}s"
        )
        return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gateway.models import train_cf

    settings = _settings(args)
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
            version, info = train_cf(services, settings, kind=args.kind)
            console.print(
                f"CF model {version}: {info['kind']}, {info['users']} users, {info['items']} items, "
                f"{info['interactions']} interactions in {info['seconds']}s"
            )
        elif args.what == "conversion":
            from gateway.models import train_conversion_model
            from profiles.types import InsufficientTrainingData

            try:
                version, m = train_conversion_model(services, settings, seed=args.seed)
            except InsufficientTrainingData as exc:
                console.print(f"[red]{exc}[/red]")
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
    from gateway.segmentation import segment_inputs
    from profiles.state import ProfileState
    from segments.report import render_report

    settings = _settings(args)
    with open_services(settings) as services:
        seg = services.segments
        if not seg.load_latest():
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


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.auth import issue_token
    from gateway.demo import load_demo_world

    settings = _settings(args)
    info = load_demo_world(
        settings, seed=args.seed, n_users=args.users, n_items=args.items, progress=progress_bar
    )
    user_token = issue_token(settings.jwt_secret, info["sample_user"], ttl_s=7 * 86400)
    admin_token = issue_token(settings.jwt_secret, "demo-admin", scopes=["admin"], ttl_s=7 * 86400)
    base = f"http://{settings.host}:{settings.port}"
    console.print(
        f"[bold green]Tailor demo[/bold green]: {info['items']} items, {info['users']} users, "
        f"{info['events']} events in {settings.data_dir}"
    )
    # Plain prints: tokens and commands must stay on one line to copy them.
    print(f"GraphiQL:     {base}/graphql")
    print(f"sample user:  {info['sample_user']}")
    print(f"user token:   {user_token}")
    print(f"admin token:  {admin_token}")
    print(
        f"try:  curl -s {base}/graphql -H 'content-type: application/json' "
        '-d \'{"query":"{ trending(first: 3) { item { id title } score } }"}\'',
        flush=True,
    )
    if args.no_serve:
        return 0
    if args.upstream:
        # Issue 8: the bundled catalog/CRM service serves the same world; items and traits
        # then resolve through it (see /readyz for its circuit state).
        from gateway.settings import replace
        from gateway.upstream_demo import upstream_process

        with upstream_process(info["world_dir"], args.upstream_port or settings.port + 1) as url:
            print(f"upstream:     {url} (catalog GET /items, CRM GET /users)", flush=True)
            serve(replace(settings, upstream_catalog_url=url, upstream_crm_url=url))
        return 0
    serve(settings)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from gateway.upstream_sync import run_sync

    settings = _settings(args)
    try:
        with progress_bar(f"sync {args.kind}") as advance:
            summary = run_sync(settings, args.kind, full=args.full, progress=advance)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    console.print(summary.summary())
    for rid, reason in summary.rejected[:10]:
        console.print(f"  rejected {rid}: {reason}")
    return 0 if summary.ok else 1


def cmd_persisted_queries(args: argparse.Namespace) -> int:
    from gateway.edge_apq import parse_manifest
    from storage import open_store

    settings = _settings(args)
    try:
        rows = parse_manifest(json.loads(Path(args.file).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:  # JSON and manifest errors are ValueErrors
        console.print(f"[red]{args.file}: {exc}[/red]")
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_path)
    try:
        added = store.put_persisted_queries(rows)
        console.print(
            f"registered {added} new of {len(rows)} operations "
            f"({store.count_persisted_queries()} in the safelist)"
        )
    finally:
        store.close()
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    from gateway.apikeys import ApiKeyError, ApiKeyRegistry
    from storage import open_store

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_path)
    try:
        registry = ApiKeyRegistry(store)
        if args.action == "create":
            try:
                key, plaintext = registry.create(args.name, args.scope or [])
            except ApiKeyError as exc:
                console.print(f"[red]{exc}[/red]")
                return 2
            console.print(
                f"created API key {key.id} ({key.name}, scopes: "
                f"{' '.join(key.scopes) or '-'}); it is shown only once:"
            )
            print(plaintext, flush=True)  # plain print: one line to copy
            return 0
        if args.action == "revoke":
            if registry.revoke(args.id):
                console.print(f"revoked API key {args.id}")
                return 0
            console.print(f"[red]no active API key {args.id}[/red]")
            return 1
        rows = [
            {
                "id": k.id,
                "name": k.name,
                "scopes": list(k.scopes),
                "created_at": k.created_at,
                "revoked_at": k.revoked_at,
            }
            for k in registry.list()
        ]
        print(_json(rows))
        return 0
    finally:
        store.close()


def cmd_forget(args: argparse.Namespace) -> int:
    from storage.fields import FieldError, ident

    try:
        ident({"user": args.user}, "user")
    except FieldError as exc:
        console.print(f"[red]USER {exc.reason}[/red]")
        return 2
    with open_services(_settings(args)) as services:
        receipt = services.extras["privacy"].erase(args.user)
    print(
        _json({"userId": receipt.user_id, "total": receipt.total, "counts": dict(receipt.counts)})
    )
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    settings = _settings(args)
    days = settings.retention_days if args.days is None else args.days
    with open_services(settings) as services:
        counts = services.extras["privacy"].prune(days)
    console.print(
        f"retention {days} days: deleted {counts['events']} events and "
        f"{counts['profiles']} profiles left without events"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gateway.evaluate import columns, evaluate, summary_lines, write_json
    from recommend.evaluate import render_table
    from recommend.types import RecommendError

    settings = _settings(args)
    started = time.perf_counter()
    try:
        report = evaluate(
            settings,
            data=args.data,
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


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tailor",
        description="Tailor: a GraphQL personalization gateway with edge caching.",
        epilog="Settings come from TAILOR_* environment variables and an optional TOML file "
        "(--config); see the README.",
    )
    parser.add_argument("--config", help="TOML settings file (also TAILOR_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def common(p: argparse.ArgumentParser, server: bool = False) -> None:
        p.add_argument("--data-dir", type=Path, help="where the data lives (default ./var)")
        if server:
            p.add_argument("--host", help="bind address (default 127.0.0.1)")
            p.add_argument("--port", type=int, help="port (default 8000)")

    p = sub.add_parser("serve", help="run the gateway", description="Run the gateway (uvicorn).")
    common(p, server=True)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo",
        help="generate the demo fashion shop, load it and serve",
        description="Generate a deterministic synthetic fashion shop, load it through "
        "the import paths, build the models and serve. An existing data dir is reused.",
    )
    common(p, server=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--no-serve", action="store_true", help="load only, do not start the server")
    p.add_argument(
        "--upstream",
        action="store_true",
        help="also run the bundled catalog/CRM upstream service and resolve through it",
    )
    p.add_argument("--upstream-port", type=int, help="its port (default: --port + 1)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "sync",
        help="pull items or users from the configured upstream",
        description="Incremental pull from TAILOR_UPSTREAM_CATALOG_URL (items) or "
        "TAILOR_UPSTREAM_CRM_URL (users). The cursor is saved after every page: "
        "an interrupted sync resumes where it stopped.",
    )
    p.add_argument("kind", choices=["items", "users"])
    p.add_argument("--full", action="store_true", help="ignore the saved cursor, pull everything")
    common(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser(
        "import",
        help="import items, users, events or transactions from a file",
        description="Import a JSONL/NDJSON, CSV or Parquet file. Invalid rows are "
        "reported with their row, field and reason (and written to FILE.rejects.jsonl).",
    )
    p.add_argument("kind", choices=["items", "users", "events", "transactions"])
    p.add_argument("file")
    common(p)
    p.add_argument(
        "--format", choices=["jsonl", "ndjson", "csv", "parquet"], help="default: from the suffix"
    )
    p.add_argument(
        "--map", help="rename columns: SOURCE=TARGET,... (e.g. movieId=itemId,rating=value)"
    )
    p.add_argument("--type", help="events: event type for rows without one (e.g. rate)")
    p.add_argument("--id-prefix", help="events: prefix for user/item/session ids (e.g. ml)")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="items: write the valid rows even when some are invalid (default: all or nothing)",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser(
        "token",
        help="issue a JWT for a user (development and tests)",
        description="Print an HS256 JWT signed with TAILOR_JWT_SECRET.",
    )
    p.add_argument("--user", required=True, help="the user id (the token's sub)")
    p.add_argument("--scope", action="append", choices=["admin", "service"], help="repeatable")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until expiry (default 3600)")
    p.set_defaults(func=cmd_token)

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
        help="movielens: ml-latest-small from TAILOR_DATA_DIR; store: the event log",
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

    p = sub.add_parser("profiles", help="profile maintenance")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = psub.add_parser("rebuild", help="recompute every profile from the event log")
    common(r)
    r.set_defaults(func=cmd_profiles)

    p = sub.add_parser("persisted-queries", help="manage the persisted-query safelist")
    qsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = qsub.add_parser(
        "register",
        help="register the operations of a manifest file",
        description="Register operations from an Apollo persisted-query manifest "
        "or a {sha256: query} JSON map (safelist mode runs only these).",
    )
    r.add_argument("file")
    common(r)
    r.set_defaults(func=cmd_persisted_queries)

    p = sub.add_parser("apikey", help="create, revoke or list API keys (server-to-server callers)")
    ksub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = ksub.add_parser("create", help="create a key; prints it once")
    r.add_argument("--name", required=True, help="who uses it, e.g. edge-worker")
    r.add_argument(
        "--scope", action="append", choices=["admin", "service", "read"], help="repeatable"
    )
    common(r)
    r.set_defaults(func=cmd_apikey)
    r = ksub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id")
    common(r)
    r.set_defaults(func=cmd_apikey)
    r = ksub.add_parser("list", help="list keys (ids, names, scopes; never secrets)")
    common(r)
    r.set_defaults(func=cmd_apikey)

    p = sub.add_parser("forget", help="erase everything about a user and print the receipt")
    p.add_argument("user")
    common(p)
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("retention", help="delete events older than the retention period")
    p.add_argument("--days", type=float, help="default: TAILOR_RETENTION_DAYS (365)")
    common(p)
    p.set_defaults(func=cmd_retention)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        return 2
    except Exception as exc:
        from storage.types import StorageError

        if isinstance(exc, StorageError):
            console.print(f"[red]error:[/red] {exc}")
            return 2
        raise


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)


if __name__ == "__main__":
    sys.exit(main())

"""`tailor` commands: serve, demo."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.common import Common, console, progress_bar, settings_from
from gateway.settings import Settings, load_settings, replace

if TYPE_CHECKING:
    from starlette.applications import Starlette


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser("serve", help="run the gateway", description="Run the gateway (uvicorn).")
    common(p, server=True)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (more than 1 needs the shared tier: docs/FLEET.md)",
    )
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


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    workers = args.workers
    if workers < 1:
        console.print(f"[red]usage error:[/red] --workers must be at least 1, got {workers}")
        return 2
    if workers > 1:
        from gateway.wiring import shared_tier_missing

        missing = shared_tier_missing(settings)
        if missing:
            console.print(
                f"[red]refusing --workers {workers}:[/red] on the embedded tier every process "
                "keeps its own response cache, persisted queries, rate limits, trending and "
                "segment counters, so the processes would answer differently and the rate "
                "limit would multiply. Configure the shared tier first (docs/FLEET.md):"
            )
            for item in missing:
                console.print(f"  - {item}")
            return 2
        # The worker processes build their app from the environment: hand them what the
        # command line chose.
        os.environ["TAILOR_DATA_DIR"] = str(settings.data_dir)
        if getattr(args, "config", None):
            os.environ["TAILOR_CONFIG"] = str(args.config)
        # /metrics of any worker sums every worker's counters (prometheus_client's multiprocess
        # mode): they need one empty directory, known before they start.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_metrics_dir(settings))
    serve(settings, workers=workers)
    return 0


def _fresh_metrics_dir(settings: Settings) -> Path:
    """``data_dir/metrics-multiproc``, emptied: the files of an earlier run would add up."""
    path = settings.data_dir / "metrics-multiproc"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def app_from_environment() -> Starlette:
    """The app of one uvicorn worker process (``--workers N``): settings from the environment."""
    from gateway.app import create_app

    return create_app(load_settings(), freeze_heap=True)


def serve(settings: Settings, workers: int = 1) -> None:
    import uvicorn

    from gateway.app import create_app

    app: Any = (
        create_app(settings, freeze_heap=True)
        if workers == 1
        else f"{__name__}:app_from_environment"
    )
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers if workers > 1 else None,
        # A worker builds its whole app (models, indexes) before it answers the supervisor's
        # health ping; the default 5 s kills it mid start-up on a busy machine.
        timeout_worker_healthcheck=120,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Logging was configured once by the CLI (observability/logs.py): uvicorn's records
        # go through the same handler; the access log is the gateway's own (tailor.access).
        log_config=None,
        loop="uvloop",
        http="httptools",
        access_log=False,
        # SIGTERM: stop accepting, let in-flight requests finish, then the lifespan drains the
        # ingest queue and closes the store.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
        # Uvicorn believes X-Forwarded-For from 127.0.0.1 by default: off unless the deployment
        # says a trusted proxy sets it, and then only from the configured proxies.
        proxy_headers=settings.trust_forwarded_for,
        forwarded_allow_ips=list(settings.trusted_proxies),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.cli.demo_world import load_demo_world
    from gateway.security.auth import issue_token

    settings = settings_from(args)
    info = load_demo_world(
        settings,
        seed=args.seed,
        n_users=args.users,
        n_items=args.items,
        progress=progress_bar,
        # First-run time: the item index (encoding 5,000 items) and the CF and conversion
        # models are built after the server is up when it serves; the poller swaps them in.
        train_models=args.no_serve,
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
    print(
        "models:       the item index, CF and conversion are built in the background now; "
        "until they are served (/readyz models), answers use trending and segment popularity, "
        "and search and similarItems wait for the index",
        flush=True,
    )
    _train_in_background(settings)
    # The background thread builds the index: the gateway must not build a second one.
    settings = replace(settings, index_build_on_start=False)
    if args.upstream:
        # The bundled catalog/CRM stand-in serves the same world; items and traits
        # then resolve through it (see /readyz for its circuit state).
        from gateway.cli.upstream_demo import upstream_process

        with upstream_process(info["world_dir"], args.upstream_port or settings.port + 1) as url:
            print(f"upstream:     {url} (catalog GET /items, CRM GET /users)", flush=True)
            serve(replace(settings, upstream_catalog_url=url, upstream_crm_url=url))
        return 0
    serve(settings)
    return 0


def _train_in_background(settings: Settings) -> None:
    """Train the demo's missing models in a low-priority daemon thread while it serves."""
    import logging
    import os
    import threading

    from gateway.cli.demo_world import train_demo_models

    log = logging.getLogger("tailor.demo")

    def run() -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: threads are tasks
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        started = time.monotonic()
        try:
            train_demo_models(settings)
        except Exception:  # the demo keeps serving with the fallbacks
            log.exception("background model training failed")
            return
        log.info(
            "demo models trained in the background in %.0fs; served from the next model poll "
            "(within %gs)",
            time.monotonic() - started,
            settings.model_poll_s,
        )

    threading.Thread(target=run, name="tailor-demo-training", daemon=True).start()

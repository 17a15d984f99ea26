"""`tailor` commands: import, sync, profiles."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.common import (
    Common,
    console,
    count_lines,
    open_services,
    progress_bar,
    settings_from,
)
from gateway.wiring import upstreams
from upstream.sync import SyncSummary, sync_records


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
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

    p = sub.add_parser("profiles", help="profile maintenance")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = psub.add_parser("rebuild", help="recompute every profile from the event log")
    common(r)
    r.set_defaults(func=cmd_profiles)


def cmd_import(args: argparse.Namespace) -> int:
    from catalog.importer import import_items
    from catalog.types import ImportRejected
    from profiles.imports import import_events, import_transactions, import_users
    from storage.files import parse_mapping

    settings = settings_from(args)
    path = Path(args.file)
    mapping = parse_mapping(args.map)
    with open_services(settings, role="import") as services:
        total = count_lines(path) if path.is_file() else None
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


def cmd_sync(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    ups = upstreams(settings)
    source = None if ups is None else (ups.catalog if args.kind == "items" else ups.crm)
    if ups is None or source is None:
        name = "TAILOR_UPSTREAM_CATALOG_URL" if args.kind == "items" else "TAILOR_UPSTREAM_CRM_URL"
        console.print(f"[red]no upstream for {args.kind}: set {name}[/red]")
        return 2

    async def run(store: Any, advance: Callable[[int], None]) -> SyncSummary:
        try:
            return await sync_records(
                source,
                store,
                page_size=settings.upstream_sync_page_size,
                progress=advance,
                full=args.full,
            )
        finally:
            await ups.aclose()

    # A gateway running in another process sees the new rows through its model poller; its
    # upstream cache expires by TTL.
    with open_services(settings) as services, progress_bar(f"sync {args.kind}") as advance:
        summary = asyncio.run(run(services.store, advance))
    console.print(summary.summary())
    for rid, reason in summary.rejected[:10]:
        console.print(f"  rejected {rid}: {reason}")
    return 0 if summary.ok else 1


def cmd_profiles(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with open_services(settings) as services:
        with progress_bar("rebuild profiles", services.store.count_events()) as advance:
            started = time.perf_counter()
            n = services.ingest.rebuild_profiles(progress=advance)
        console.print(
            f"rebuilt {n} profiles from {services.store.count_events()} events "
            f"in {time.perf_counter() - started:.1f}s"
        )
        return 0

"""`tailor migrate`: bring the configured database to the current schema; copy a SQLite store
into PostgreSQL (docs/POSTGRES.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import Common, console
from gateway.settings import load_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply schema migrations to the configured database (SQLite or PostgreSQL)",
        description="Apply pending schema migrations to the database the settings name "
        "(TAILOR_DATABASE_URL, else data_dir/tailor.db) and print its schema version. "
        "Idempotent. With --copy-from-sqlite, then copy an existing SQLite store into the "
        "PostgreSQL database in one transaction.",
    )
    p.add_argument("--database-url", help="postgresql://… (default: TAILOR_DATABASE_URL)")
    p.add_argument(
        "--copy-from-sqlite",
        type=Path,
        metavar="PATH",
        help="a data dir (or its tailor.db) whose store is copied into PostgreSQL",
    )
    p.add_argument(
        "--replace",
        action="store_true",
        help="with --copy-from-sqlite: delete the rows the target already holds first",
    )
    common(p)
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from gateway.wiring import open_configured_store
    from storage import describe, is_database_url
    from storage.copy import copy_sqlite_to_postgres, stored_schema_version
    from storage.migrations import MIGRATIONS

    overrides = {} if args.data_dir is None else {"data_dir": args.data_dir}
    if args.database_url:
        overrides["database_url"] = args.database_url  # validated like TAILOR_DATABASE_URL
    settings = load_settings(getattr(args, "config", None), **overrides)
    target = settings.database
    if args.copy_from_sqlite is not None and not is_database_url(target):
        console.print(
            "[red]--copy-from-sqlite copies into PostgreSQL: set TAILOR_DATABASE_URL or pass "
            "--database-url postgresql://…[/red]"
        )
        return 2
    if args.replace and args.copy_from_sqlite is None:
        console.print("[red]--replace only applies with --copy-from-sqlite[/red]")
        return 2
    if not is_database_url(target):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    before = stored_schema_version(target)
    store = open_configured_store(settings)
    try:
        after = store.schema_version
        applied = after - before
        console.print(
            f"{describe(target)}: schema version {after} (latest {len(MIGRATIONS)}); "
            + (f"applied {applied} migration(s)" if applied else "already up to date")
        )
        print(after, flush=True)  # plain stdout: the version, for scripts
        if args.copy_from_sqlite is None:
            return 0
        report = copy_sqlite_to_postgres(
            args.copy_from_sqlite,
            store,
            replace=args.replace,
            progress=lambda table, n: console.print(f"  {table}: {n} rows"),
        )
    finally:
        store.close()
    if report.replaced:
        console.print(f"deleted the rows the target held first: {report.replaced}")
    console.print(
        f"copied {report.total} rows from {report.source} into {report.target} in "
        f"{report.seconds:.1f} s (one transaction; row counts verified per table)"
    )
    return 0

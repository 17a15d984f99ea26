"""`tailor` commands: backup, restore (the embedded store and the model artifacts)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from gateway.cli.common import Common, console, progress_bar, settings_from
from gateway.settings import Settings
from storage.backup import BackupError, backup, restore


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "backup",
        help="back up the store and the model artifacts (safe while the gateway runs)",
        description="Copy tailor.db through SQLite's online backup API and every complete "
        "index/model version into DEST (a new directory), with a manifest of sha256 digests.",
    )
    p.add_argument("dest", type=Path, help="a new (or empty) directory")
    common(p)
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser(
        "restore",
        help="restore a backup into the data dir (gateway stopped)",
        description="Verify a backup's digests, then put its store and model artifacts in "
        "the data dir. Refuses a data dir that holds a store unless --force.",
    )
    p.add_argument("src", type=Path, help="a directory written by `tailor backup`")
    p.add_argument("--force", action="store_true", help="replace the existing store and models")
    common(p)
    p.set_defaults(func=cmd_restore)


def _embedded_only(settings: Settings, verb: str) -> int | None:
    """`tailor backup`/`restore` copy the embedded SQLite store; PostgreSQL has its own tools."""
    if settings.database_url is None:
        return None
    console.print(
        f"[red]{verb} refused:[/red] the store is PostgreSQL (TAILOR_DATABASE_URL); back it up "
        "with pg_dump / pg_restore (docs/POSTGRES.md). `tailor backup` covers the embedded "
        "SQLite store and the model artifacts."
    )
    return 2


def cmd_backup(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if (refused := _embedded_only(settings, "backup")) is not None:
        return refused
    try:
        with progress_bar("back up store (pages)") as advance:
            manifest = backup(settings.data_dir, args.dest, progress=_pages(advance))
    except BackupError as exc:
        console.print(f"[red]backup failed:[/red] {exc}")
        return 1
    console.print(f"backup written to {args.dest}: {_describe(manifest)}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if (refused := _embedded_only(settings, "restore")) is not None:
        return refused
    try:
        manifest = restore(args.src, settings.data_dir, force=args.force)
    except BackupError as exc:
        console.print(f"[red]restore failed:[/red] {exc}")
        return 1
    console.print(
        f"restored {args.src} (taken {manifest['created_at']}) into {settings.data_dir}: "
        f"{_describe(manifest)}"
    )
    return 0


def _pages(advance: Callable[[int], None]) -> Callable[[int, int], None]:
    seen = 0

    def step(done: int, _total: int) -> None:
        nonlocal seen
        advance(done - seen)
        seen = done

    return step


def _describe(manifest: dict[str, object]) -> str:
    counts = manifest["counts"]
    artifacts = manifest["artifacts"]
    assert isinstance(counts, dict) and isinstance(artifacts, dict)
    models = ", ".join(f"{k} {','.join(v)}" for k, v in sorted(artifacts.items())) or "no models"
    return f"{counts['items']} items, {counts['events']} events; {models}"

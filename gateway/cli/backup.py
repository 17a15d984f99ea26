"""`tailor` commands: backup, restore (the embedded store and the model artifacts)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from gateway.cli.common import Common, console, progress_bar, settings_from
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


def cmd_backup(args: argparse.Namespace) -> int:
    settings = settings_from(args)
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

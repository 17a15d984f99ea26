"""Backup and restore of an embedded data directory: the SQLite store and the model artifacts.

``backup(data_dir, dest)`` copies ``tailor.db`` through SQLite's online backup API (a consistent
snapshot while a gateway keeps writing; WAL included) and every *complete* artifact version
under ``index/`` and ``models/`` (a ``v000001``-style directory holding its ``manifest.json``;
half-written versions are skipped), then writes ``backup.json``: when, what, and the sha256 of
every file. ``restore(src, data_dir)`` verifies those digests first, then puts the store and the
artifacts in place; it refuses a data directory that already holds a store unless ``force``.
Restore into a stopped gateway: a running one keeps its open store.

Caches and derived files are not backed up: ``embeddings.db`` (encoder cache), ``encoders/``
(the ONNX export), ``lake/`` (a Parquet export) and ``demo/`` are rebuilt on demand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from storage.types import StorageError

DB_FILE = "tailor.db"
MANIFEST = "backup.json"
ARTIFACT_DIRS = ("index", "models")
FORMAT = 1
_VERSION = re.compile(r"v\d{6}")
_PAGES_PER_STEP = 1024


class BackupError(StorageError):
    """A backup cannot be written or restored (the message says why)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def complete_versions(root: Path) -> Iterator[Path]:
    """Every complete artifact version under ``root`` (``…/vNNNNNN`` with a manifest)."""
    if not root.is_dir():
        return
    for manifest in sorted(root.rglob("manifest.json")):
        version = manifest.parent
        if _VERSION.fullmatch(version.name):
            yield version


def backup(
    data_dir: Path,
    dest: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write a backup of ``data_dir`` into the new directory ``dest``; returns its manifest.

    ``progress(pages_done, pages_total)`` follows the database copy."""
    db = data_dir / DB_FILE
    if not db.is_file():
        raise BackupError(f"no store to back up: {db} does not exist")
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} exists and is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / DB_FILE
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:

        def step(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        src.backup(dst, pages=_PAGES_PER_STEP, progress=step)
        counts = {
            table: dst.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("items", "events")
        }
    finally:
        dst.close()
        src.close()
    files = {DB_FILE: _sha256(target)}
    versions: dict[str, list[str]] = {}
    for top in ARTIFACT_DIRS:
        for version in complete_versions(data_dir / top):
            rel = version.relative_to(data_dir)
            shutil.copytree(version, dest / rel)
            versions.setdefault(str(rel.parent), []).append(version.name)
            for f in sorted(p for p in (dest / rel).rglob("*") if p.is_file()):
                files[str(f.relative_to(dest))] = _sha256(f)
    manifest = {
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": str(data_dir.resolve()),
        "counts": counts,
        "artifacts": versions,
        "files": files,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of the backup in ``src``, with every file checked against its digest."""
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{src} is not a Tailor backup (no {MANIFEST})") from None
    except json.JSONDecodeError as exc:
        raise BackupError(f"{src / MANIFEST} is not valid JSON: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    for rel, digest in manifest["files"].items():
        path = src / rel
        if not path.is_file():
            raise BackupError(f"backup file missing: {rel}")
        if _sha256(path) != digest:
            raise BackupError(f"backup file corrupted (sha256 differs): {rel}")
    return manifest


def restore(src: Path, data_dir: Path, *, force: bool = False) -> dict[str, Any]:
    """Restore the backup in ``src`` into ``data_dir`` (verified first); returns its manifest.

    Existing store and artifacts are replaced only with ``force``."""
    manifest = read_manifest(src)
    db = data_dir / DB_FILE
    if db.exists() and not force:
        raise BackupError(f"{db} exists: restore into an empty data dir, or pass --force")
    data_dir.mkdir(parents=True, exist_ok=True)
    staged = data_dir / f".{DB_FILE}.restoring"
    shutil.copyfile(src / DB_FILE, staged)
    with sqlite3.connect(staged) as check:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            staged.unlink()
            raise BackupError("the backed-up store fails SQLite's integrity check")
    check.close()
    for suffix in ("-wal", "-shm"):  # the old store's journal must not replay onto the new one
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(staged, db)
    for top in ARTIFACT_DIRS:
        shutil.rmtree(data_dir / top, ignore_errors=True)
        if (src / top).is_dir():
            shutil.copytree(src / top, data_dir / top)
    return manifest

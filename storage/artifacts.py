"""Versioned artifacts on disk: the one helper every model and index store writes through.

Layout under ``root``::

    root/
      v000001/          one version = one directory: v + a zero-padded sequence number
        manifest.json   the marker file: a version without it is incomplete and never listed
        ...             whatever the owning store writes
      .tmp-<random>/    a write in progress (never read; removed on failure)

A version is filled in a temp directory beside its final place and renamed into place (atomic
on one filesystem), so a reader sees either no version or a complete one. A writer first claims
its number by creating the (empty) version directory: ``mkdir`` fails if the name exists, so
that is the lock between concurrent writers (the loser takes the next number), and a claimed
directory is never listed or pruned, so a number is never handed out twice even while other
writers prune. The filled temp directory then replaces the empty claimed one (POSIX ``rename``).
Version names sort in write order, so ``latest()`` is the greatest name; with ``keep`` set, only
the newest ``keep`` versions survive a write.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"
_VERSION = re.compile(r"v(\d{6,})")


def version_name(n: int) -> str:
    return f"v{n:06d}"


class ArtifactStore:
    """Writes, lists and locates the versions of one kind of artifact under ``root``."""

    def __init__(
        self, root: str | Path, *, kind: str, marker: str = "manifest.json", keep: int | None = None
    ) -> None:
        if keep is not None and keep < 1:
            raise ValueError("keep must be >= 1")
        self.root = Path(root)
        self.kind = kind
        self.marker = marker
        self.keep = keep

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            p.name
            for p in self.root.iterdir()
            if _VERSION.fullmatch(p.name) and (p / self.marker).is_file()
        ]
        return sorted(found, key=lambda v: int(v[1:]))

    def latest(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def exists(self, version: str) -> bool:
        return bool(_VERSION.fullmatch(version)) and (self.root / version / self.marker).is_file()

    def path(self, version: str) -> Path:
        """The directory of ``version`` (``ValueError`` for a name outside the scheme)."""
        if not _VERSION.fullmatch(version):
            raise ValueError(f"{version!r} is not a {self.kind} version name (v000001, ...)")
        return self.root / version

    def write(self, fill: Callable[[Path, str], None]) -> str:
        """A new version: ``fill(tmp_dir, version)`` writes the files (the marker included);
        the directory is then renamed into place. Returns the version."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self.root))
        try:
            version = self._claim()
            try:
                fill(tmp, version)
                if not (tmp / self.marker).is_file():
                    raise RuntimeError(f"a {self.kind} version must write {self.marker}")
                os.rename(tmp, self.root / version)  # replaces the empty claimed directory
            except BaseException:
                with contextlib.suppress(OSError):
                    (self.root / version).rmdir()  # only while still empty: release the claim
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._prune()
        return version

    def _claim(self) -> str:
        """Reserve the next version number by creating its empty directory (exclusive)."""
        while True:
            taken = [int(v[1:]) for v in self._all_names()]
            version = version_name((max(taken) if taken else 0) + 1)
            try:
                (self.root / version).mkdir()
                return version
            except FileExistsError:
                continue

    def write_file(self, version: str, name: str, text: str) -> Path:
        """Add or replace one file inside an existing version, atomically."""
        target = self.path(version) / name
        tmp = target.with_name(f".{name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return target

    def _all_names(self) -> list[str]:
        # Incomplete directories hold their number too: a new write never reuses it.
        return [p.name for p in self.root.iterdir() if _VERSION.fullmatch(p.name)]

    def _prune(self) -> None:
        if self.keep is None:
            return
        for old in self.versions()[: -self.keep]:
            shutil.rmtree(self.root / old, ignore_errors=True)


class VersionedStore:
    """The listing half every model store shares: where its versions live, which exist, the
    newest. Subclasses set ``self.artifacts`` and add their own write/load."""

    artifacts: ArtifactStore

    @property
    def root(self) -> Path:
        return self.artifacts.root

    def versions(self) -> list[str]:
        return self.artifacts.versions()

    def latest(self) -> str | None:
        return self.artifacts.latest()

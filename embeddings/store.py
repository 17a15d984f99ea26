"""Versioned index artifacts on disk, and the holder a running gateway swaps them in.

Layout under ``root``::

    root/
      20261126T150102123456Z/      one version = one directory, named by UTC build time
        manifest.json              version, model_id, dimension, count, kind, params, built_at
        index.faiss, items.json    written by FaissIndex.save
      .tmp-<random>/               a write in progress (never read; cleaned up on failure)

A version is written into a temp directory next to its final place and renamed into place
(atomic on one filesystem), so a reader sees either no version or a complete one. Version
names sort chronologically, so ``latest()`` is the greatest name; the newest ``keep``
versions are kept.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from embeddings.faiss_index import FaissIndex
from embeddings.types import ArtifactError, IndexMismatch, VectorIndex

MANIFEST_FILE = "manifest.json"
_TMP_PREFIX = ".tmp-"


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a stored index version is: written as ``manifest.json`` next to the index."""

    version: str
    model_id: str
    dimension: int
    count: int
    kind: str
    params: dict[str, Any]
    built_at: str  # UTC, ISO 8601


class IndexStore:
    """Writes, lists and loads `FaissIndex` versions under ``root``.

    ``clock`` returns the current UTC time (injected for tests); ``keep`` is how many of the
    newest versions survive a ``write``. Writers must not run concurrently against the same
    root (one builder job owns a store); readers may load while a writer writes.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        keep: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.root = Path(root)
        self.keep = keep
        self._clock = clock

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
        )

    def latest(self) -> str | None:
        """The newest complete version, or None if nothing was written yet."""
        versions = self.versions()
        return versions[-1] if versions else None

    def write(self, index: FaissIndex, model_id: str) -> str:
        """Persist ``index`` as a new version built with ``model_id``; returns the version."""
        self.root.mkdir(parents=True, exist_ok=True)
        now = self._clock().astimezone(UTC)
        version = self._unique_version(now.strftime("%Y%m%dT%H%M%S%fZ"))
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=self.root))
        try:
            index.save(tmp)
            manifest = Manifest(
                version=version,
                model_id=model_id,
                dimension=index.dimension,
                count=len(index),
                kind=index.kind,
                params=index.params,
                built_at=now.isoformat(),
            )
            (tmp / MANIFEST_FILE).write_text(
                json.dumps(asdict(manifest), indent=2, sort_keys=True), encoding="utf-8"
            )
            tmp.rename(self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._prune()
        return version

    def manifest(self, version: str) -> Manifest:
        """The manifest of ``version``; ``ArtifactError`` if missing or unreadable."""
        path = self.root / version / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Manifest(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ArtifactError(f"cannot read manifest {path}: {exc}") from exc

    def load(
        self,
        version: str | None = None,
        *,
        model_id: str | None = None,
        dimension: int | None = None,
    ) -> FaissIndex:
        """Load ``version`` (default: latest), checking it was built for this encoder.

        Pass the serving encoder's ``model_id`` and ``dimension``: vectors from another
        model live in a different space, so a mismatch raises ``IndexMismatch`` rather than
        serving nonsense. ``ArtifactError`` if there is no such (complete) version.
        """
        if version is None:
            version = self.latest()
            if version is None:
                raise ArtifactError(f"no index version under {self.root}")
        manifest = self.manifest(version)
        if model_id is not None and manifest.model_id != model_id:
            raise IndexMismatch(
                f"index {version} was built with {manifest.model_id!r}, encoder is {model_id!r}"
            )
        if dimension is not None and manifest.dimension != dimension:
            raise IndexMismatch(
                f"index {version} has dimension {manifest.dimension}, encoder has {dimension}"
            )
        index = FaissIndex.load(self.root / version)
        if index.dimension != manifest.dimension or len(index) != manifest.count:
            raise ArtifactError(f"index {version} does not match its manifest")
        return index

    def _unique_version(self, base: str) -> str:
        # Two writes within one clock tick (an injected clock) still get distinct names
        # that sort after each other.
        version, n = base, 0
        while (self.root / version).exists():
            n += 1
            version = f"{base}-{n:03d}"
        return version

    def _prune(self) -> None:
        for old in self.versions()[: -self.keep]:
            shutil.rmtree(self.root / old, ignore_errors=True)


IndexT = TypeVar("IndexT", bound=VectorIndex)


class IndexHolder(Generic[IndexT]):
    """The serving index, swappable atomically while requests are in flight.

    Readers call ``get()`` once per request and use that local reference throughout; a
    concurrent ``swap`` replaces the reference for *later* requests only, and the old index
    stays alive until its last reader drops it — so no request ever fails or mixes versions.
    """

    def __init__(self, index: IndexT | None = None, version: str | None = None) -> None:
        self._lock = threading.Lock()
        self._current: tuple[IndexT | None, str | None] = (index, version)

    def get(self) -> IndexT:
        """The current index; ``ArtifactError`` if none has been installed yet."""
        index, _ = self._current
        if index is None:
            raise ArtifactError("no index loaded yet")
        return index

    def snapshot(self) -> tuple[IndexT | None, str | None]:
        """The current (index, version) pair, read together."""
        return self._current

    @property
    def version(self) -> str | None:
        return self._current[1]

    def swap(self, index: IndexT, version: str | None = None) -> IndexT | None:
        """Install ``index`` (tagged ``version``) for new readers; returns the previous one."""
        with self._lock:
            previous, _ = self._current
            self._current = (index, version)
        return previous

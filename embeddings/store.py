"""Versioned index artifacts on disk, and the holder a running gateway swaps them in.

Layout under ``root``::

    root/
      v000001/                     one version = one directory (``storage.artifacts`` names)
        manifest.json              version, model_id, dimension, count, kind, params, built_at
        index.faiss, items.json    written by FaissIndex.save
      .tmp-<random>/               a write in progress (never read; cleaned up on failure)

Versions are written through :class:`storage.artifacts.ArtifactStore` (one naming scheme for
every model and index): filled in a temp directory and renamed into place, so a reader sees
either no version or a complete one. Version names sort in write order, so ``latest()`` is the
newest; the newest ``keep`` versions are kept.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from embeddings.faiss_index import FaissIndex
from embeddings.types import ArtifactError, IndexMismatch, VectorIndex
from storage.artifacts import ArtifactStore

MANIFEST_FILE = "manifest.json"


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

    ``clock`` returns the current UTC time (injected for tests) and stamps the manifest's
    ``built_at``; ``keep`` is how many of the newest versions survive a ``write``. Readers may
    load while a writer writes.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        keep: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.artifacts = ArtifactStore(root, kind="index", marker=MANIFEST_FILE, keep=keep)
        self._clock = clock

    @property
    def root(self) -> Path:
        return self.artifacts.root

    @property
    def keep(self) -> int:
        assert self.artifacts.keep is not None
        return self.artifacts.keep

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        return self.artifacts.versions()

    def latest(self) -> str | None:
        """The newest complete version, or None if nothing was written yet."""
        return self.artifacts.latest()

    def write(self, index: FaissIndex, model_id: str) -> str:
        """Persist ``index`` as a new version built with ``model_id``; returns the version."""
        built_at = self._clock().astimezone(UTC).isoformat()

        def fill(tmp: Path, version: str) -> None:
            index.save(tmp)
            manifest = Manifest(
                version=version,
                model_id=model_id,
                dimension=index.dimension,
                count=len(index),
                kind=index.kind,
                params=index.params,
                built_at=built_at,
            )
            (tmp / MANIFEST_FILE).write_text(
                json.dumps(asdict(manifest), indent=2, sort_keys=True), encoding="utf-8"
            )

        return self.artifacts.write(fill)

    def manifest(self, version: str) -> Manifest:
        """The manifest of ``version``; ``ArtifactError`` if missing, unreadable or not a
        version name."""
        path = self._path(version) / MANIFEST_FILE
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
        index = FaissIndex.load(self._path(version))
        if index.dimension != manifest.dimension or len(index) != manifest.count:
            raise ArtifactError(f"index {version} does not match its manifest")
        return index

    def _path(self, version: str) -> Path:
        try:
            return self.artifacts.path(version)
        except ValueError as exc:
            raise ArtifactError(f"no index version {version!r} under {self.root}: {exc}") from exc


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

"""`ConversionModelStore`: numbered versions of the conversion model on disk.

Layout: ``<root>/<version>/{manifest.json, trees.npz}`` (the `ConversionModel` artifact) with
versions ``v000001``, ``v000002``... Versions are written through
:class:`storage.artifacts.ArtifactStore`: filled in a temporary directory and renamed into
place, so readers never see a half-written model, and concurrent writers get distinct versions.
"""

from __future__ import annotations

from pathlib import Path

from profiles.types import ConversionModelNotFound
from recommend.conversion_model import MANIFEST_FILE, ConversionModel
from storage.artifacts import ArtifactStore


class ConversionModelStore:
    """Versioned `ConversionModel`s under ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.artifacts = ArtifactStore(root, kind="conversion model", marker=MANIFEST_FILE)

    @property
    def root(self) -> Path:
        return self.artifacts.root

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        return self.artifacts.versions()

    def write(self, model: ConversionModel) -> str:
        """Persist ``model`` as a new version; returns the version (also set on ``model``)."""

        def fill(tmp: Path, version: str) -> None:
            model.save(tmp, version=version)

        version = self.artifacts.write(fill)
        model.version = version
        return version

    def load(self, version: str) -> ConversionModel:
        """One version; `ConversionModelNotFound` if it does not exist (or is not a version
        name, e.g. a path)."""
        if not self.artifacts.exists(version):
            raise ConversionModelNotFound(f"no conversion model {version!r} in {self.root}")
        return ConversionModel.load(self.artifacts.path(version))

    def latest(self) -> ConversionModel:
        """The newest version; `ConversionModelNotFound` if the store is empty."""
        version = self.artifacts.latest()
        if version is None:
            raise ConversionModelNotFound(f"no conversion model in {self.root}")
        return self.load(version)

"""`SegmentModelStore`: versioned segment models on disk.

Layout: ``<root>/<version>/{manifest.json, model.json, arrays.npz}`` with versions ``v000001``,
``v000002``... Versions are written through :class:`storage.artifacts.ArtifactStore`: filled in a
temporary directory and renamed into place, so readers never see a half-written model, and
concurrent writers get distinct versions.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from segments.features import FeatureTransform
from segments.fit import FitMetrics
from segments.model import SegmentModel
from segments.types import (
    ModelNotFound,
    RuleSegment,
    Segment,
    SegmentingConfig,
    SegmentKind,
    SegmentTrait,
)
from storage.artifacts import ArtifactStore

FORMAT = 1
MANIFEST_FILE = "manifest.json"


def _segment_json(seg: Segment) -> dict[str, Any]:
    return {
        "id": seg.id,
        "name": seg.name,
        "description": seg.description,
        "kind": seg.kind.value,
        "size": seg.size,
        "traits": [[t.name, t.value, t.z_score] for t in seg.traits],
    }


def _segment_from_json(d: dict[str, Any]) -> Segment:
    traits = [SegmentTrait(str(n), float(v), float(z)) for n, v, z in d["traits"]]
    return Segment(d["id"], d["name"], d["description"], SegmentKind(d["kind"]), d["size"], traits)


def _config_from_json(d: dict[str, Any]) -> SegmentingConfig:
    d = dict(d)
    for key in ("features", "log_features"):
        d[key] = tuple(d[key])
    return SegmentingConfig(**d)


class SegmentModelStore:
    """Versioned `SegmentModel`s under `root` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.artifacts = ArtifactStore(root, kind="segment model", marker=MANIFEST_FILE)

    @property
    def root(self) -> Path:
        return self.artifacts.root

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        return self.artifacts.versions()

    def write(self, model: SegmentModel) -> str:
        """Persist `model` as a new version and return the version string."""

        def fill(tmp: Path, version: str) -> None:
            self._write_files(model, tmp)
            manifest = {
                "format": FORMAT,
                "version": version,
                "algorithm": model.metrics.algorithm,
                "k": model.k,
                "n_users": model.n_users,
                "built_at": model.built_at.astimezone(UTC).isoformat(),
                "written_at": datetime.now(UTC).isoformat(),
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))

        return self.artifacts.write(fill)

    @staticmethod
    def _write_files(model: SegmentModel, path: Path) -> None:
        arrays: dict[str, Any] = {f"t_{k}": v for k, v in model.transform.arrays().items()}
        arrays.update(
            centroids=model.centroids,
            profiles=model.profiles,
            pop_mean=model.pop_mean,
            pop_std=model.pop_std,
        )
        if model.core_points is not None and model.core_labels is not None:
            arrays.update(core_points=model.core_points, core_labels=model.core_labels)
        with open(path / "arrays.npz", "wb") as fh:
            np.savez(fh, **arrays)
        doc = {
            "config": asdict(model.config),
            "segment_ids": model.segment_ids,
            "segments": [_segment_json(s) for s in model.segments],
            "metrics": model.metrics.to_json(),
            "rules": [asdict(r) for r in model.rules],
            "n_users": model.n_users,
            "next_id": model.next_id,
            "built_at": model.built_at.isoformat(),
            "eps": model.eps,
        }
        (path / "model.json").write_text(json.dumps(doc, indent=1))

    def load(self, version: str) -> SegmentModel:
        """Load one version; `ModelNotFound` if it does not exist."""
        if not self.artifacts.exists(version):
            raise ModelNotFound(f"no segment model {version!r} in {self.root}")
        path = self.artifacts.path(version)
        doc = json.loads((path / "model.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        config = _config_from_json(doc["config"])
        transform = FeatureTransform.from_arrays(
            config.features, {k[2:]: v for k, v in arrays.items() if k.startswith("t_")}
        )
        return SegmentModel(
            config=config,
            transform=transform,
            segment_ids=list(doc["segment_ids"]),
            centroids=arrays["centroids"],
            profiles=arrays["profiles"],
            segments=[_segment_from_json(s) for s in doc["segments"]],
            metrics=FitMetrics.from_json(doc["metrics"]),
            pop_mean=arrays["pop_mean"],
            pop_std=arrays["pop_std"],
            n_users=int(doc["n_users"]),
            next_id=int(doc["next_id"]),
            built_at=datetime.fromisoformat(doc["built_at"]),
            rules=[RuleSegment(**r) for r in doc["rules"]],
            core_points=arrays.get("core_points"),
            core_labels=arrays.get("core_labels"),
            eps=doc["eps"],
            version=version,
        )

    def latest(self) -> SegmentModel:
        """The newest version; `ModelNotFound` if the store is empty."""
        versions = self.versions()
        if not versions:
            raise ModelNotFound(f"no segment model in {self.root}")
        return self.load(versions[-1])

"""`SegmentModelStore`: versioned segment models on disk.

Layout: ``<root>/<version>/{manifest.json, model.json, arrays.npz}`` with versions ``v000001``,
``v000002``... A version directory is written under a temporary name and renamed into place, so
readers never see a half-written model; the rename fails if another writer took that version
number first, and the writer moves on to the next one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
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

FORMAT = 1
_PREFIX = "v"
_VERSION = re.compile(r"v\d{6,}")


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
        self.root = Path(root)

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if _VERSION.fullmatch(p.name) and (p / "manifest.json").is_file()
        )

    def write(self, model: SegmentModel) -> str:
        """Persist `model` as a new version and return the version string."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            self._write_files(model, tmp)
            while True:
                existing = [int(v[len(_PREFIX) :]) for v in self.versions()]
                version = f"{_PREFIX}{(max(existing) if existing else 0) + 1:06d}"
                manifest = {
                    "format": FORMAT,
                    "version": version,
                    "algorithm": model.metrics.algorithm,
                    "k": model.k,
                    "n_users": model.n_users,
                    "built_at": model.built_at.astimezone(UTC).isoformat(),
                    "written_at": datetime.now(UTC).isoformat(),
                }
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
                try:
                    # rename() of a directory onto an existing non-empty one fails: that is
                    # the lock between concurrent writers.
                    os.rename(tmp, self.root / version)
                    return version
                except OSError:
                    if not (self.root / version).exists():
                        raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

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
        path = self.root / version
        if not _VERSION.fullmatch(version) or not (path / "manifest.json").is_file():
            raise ModelNotFound(f"no segment model {version!r} in {self.root}")
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

"""`ConversionModel`: the serving conversion-propensity model and its artifact directory.

Serving needs numpy only: a profile's `conversion_features` go through the exported trees
(`recommend.conversion_trees.TreeEnsemble`), never through scikit-learn.

Artifacts: ``save(dir)`` writes ``trees.npz`` and then ``manifest.json`` (format, version,
horizon, metrics, feature names, trained_at UTC, and under ``"trees"`` the scikit-learn version
the trees were exported from and the export check's result), each through a temp file and an
atomic rename, the manifest last, so a directory with a manifest is complete. `load` checks
the arrays' shapes and indices, so a damaged or foreign artifact is `ConversionModelNotFound`
rather than an IndexError mid-request. Numbered versions of these directories are kept by
`recommend.conversion_store.ConversionModelStore`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from profiles.state import ProfileState
from profiles.types import ConversionModelNotFound, ProfileConfig
from recommend.conversion_features import conversion_features, feature_vector
from recommend.conversion_trees import TreeEnsemble

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST_FILE = "manifest.json"
TREES_FILE = "trees.npz"


@dataclass
class ConversionModel:
    """Probability that a profile purchases within ``horizon_days`` of a reference time."""

    trees: TreeEnsemble
    feature_names: tuple[str, ...]
    horizon_days: float
    config: ProfileConfig
    metrics: dict[str, float] = field(default_factory=dict)
    trained_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    version: str | None = None

    def predict(self, state: ProfileState, now: float) -> float:
        """P(purchase in ``[now, now + horizon)``) for ``state`` at ``now`` (UTC epoch s)."""
        x = feature_vector(conversion_features(state, now, self.config), self.feature_names)
        return float(self.predict_proba(x[None, :])[0])

    def predict_many(self, states: Sequence[ProfileState], now: float) -> np.ndarray:
        """Probabilities [len(states)] for many profiles at one ``now``."""
        if not states:
            return np.empty(0, dtype=np.float64)
        X = np.vstack(
            [
                feature_vector(conversion_features(s, now, self.config), self.feature_names)
                for s in states
            ]
        )
        return self.predict_proba(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [rows] for a feature matrix [rows, len(feature_names)]."""
        raw = self.trees.raw(np.asarray(X, dtype=np.float64))
        return 1.0 / (1.0 + np.exp(-raw))

    # ------------------------------------------------------------------ persistence
    def manifest(self, version: str | None = None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": version if version is not None else self.version,
            "horizon_days": self.horizon_days,
            "metrics": self.metrics,
            "feature_names": list(self.feature_names),
            "trained_at": self.trained_at.astimezone(UTC).isoformat(),
            "n_trees": int(self.trees.feature.shape[0]),
            # What the trees were exported from and how the export was checked; loading needs
            # only numpy (npz without pickle) and this module's FORMAT.
            "trees": dict(self.trees.provenance),
            "config": {
                "weights": dict(self.config.weights),
                "affinity_half_life_days": self.config.affinity_half_life_days,
                "history_size": self.config.history_size,
            },
        }

    def save(self, path: str | Path, *, version: str | None = None) -> None:
        """Write the model into directory ``path`` (created if missing); manifest last."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".tmp-", delete=False) as fh:
            np.savez(fh, **self.trees.arrays())
        os.replace(fh.name, path / TREES_FILE)
        _write_json_atomic(path / MANIFEST_FILE, self.manifest(version))

    @classmethod
    def load(cls, path: str | Path) -> ConversionModel:
        """Load a model saved by `save`; `ConversionModelNotFound` if there is none."""
        path = Path(path)
        try:
            doc = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
            with np.load(path / TREES_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise ConversionModelNotFound(f"no conversion model in {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise ConversionModelNotFound(f"unsupported model format {found!r} in {path}")
        try:
            names = tuple(str(n) for n in doc["feature_names"])
            cfg = doc["config"]
            model = cls(
                trees=TreeEnsemble.from_arrays(
                    arrays, n_features=len(names), provenance=doc.get("trees") or {}
                ),
                feature_names=names,
                horizon_days=float(doc["horizon_days"]),
                config=ProfileConfig(
                    weights=dict(cfg["weights"]),
                    affinity_half_life_days=float(cfg["affinity_half_life_days"]),
                    history_size=int(cfg["history_size"]),
                ),
                metrics={k: float(v) for k, v in doc["metrics"].items()},
                trained_at=datetime.fromisoformat(doc["trained_at"]),
                version=doc.get("version"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConversionModelNotFound(f"invalid conversion model in {path}: {exc!r}") from exc
        if not model.trees.provenance:
            # Saved before exports were checked against scikit-learn; the arrays are valid, but
            # nothing records what produced them.
            log.warning("conversion model in %s does not record its export; retrain it", path)
        return model


def _write_json_atomic(target: Path, doc: Mapping[str, Any]) -> None:
    with tempfile.NamedTemporaryFile(
        "w", dir=target.parent, prefix=".tmp-", suffix=".json", delete=False, encoding="utf-8"
    ) as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
    os.replace(fh.name, target)

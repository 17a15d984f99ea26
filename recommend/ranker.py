"""The learned second stage: a LightGBM LambdaRank model over the candidates of every source.

:mod:`recommend.ranker_fit` learns it from query groups — one user's candidates with their
:data:`recommend.ranker_features.FEATURES` and graded labels (what the user did next) — and
exports the trees to the numpy :class:`TreeEnsemble` the conversion model already serves with;
serving never imports LightGBM. The ranker reorders the blend's best candidates
(:data:`recommend.ranker_features.MAX_CANDIDATES`) in a fraction of a millisecond.

On disk (one :class:`storage.artifacts.ArtifactStore` version per model, under
``<data dir>/models/ranker``)::

    manifest.json   format, feature names, blend weights of the ``blend`` feature, candidates
                    per source, the prior, training summary (written last: the version's marker)
    trees.npz       the exported trees
    stats.npz       per-item popularity and timing (:class:`ItemStats`), item ids in items.json
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from recommend.conversion_trees import TreeEnsemble
from recommend.ranker_features import BLEND_COLUMN, FEATURES, ItemStats
from recommend.types import ArtifactError
from storage.artifacts import ArtifactStore, VersionedStore

FORMAT = 1
MANIFEST = "manifest.json"
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float32 constant)
log = logging.getLogger("tailor.recommend.ranker")


@dataclass(frozen=True)
class RankerParams:
    """LambdaRank settings: small trees, strong leaf minimums and early stopping, because a
    shop's (or MovieLens') users give a few thousand query groups, not millions."""

    num_leaves: int = 15
    max_depth: int = 6
    min_data_in_leaf: int = 50
    learning_rate: float = 0.1
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    rounds: int = 150  # serving walks every tree of every candidate: a cap on its cost
    early_stopping: int = 30
    validation_fraction: float = 0.2
    #: Folds of users whose pooled held-out gain decides whether the ranker beats the blend
    #: (the first is the early-stopping validation part; 1: that part alone).
    selection_folds: int = 5
    budget_s: float = 120.0
    threads: int = 1  # OpenMP spinning on a shared 2-core box costs more than it gains
    seed: int = 0
    #: The trees learn a correction to ``prior x blend score`` (LightGBM's init_score), so a
    #: ranker that learned little still orders like the tuned blend.
    prior: float = 2.0


@dataclass(frozen=True)
class Group:
    """One user's candidates: features ``[n, len(FEATURES)]`` and graded labels ``[n]``.
    ``user`` keeps every group of one user (several splits) on the same side of validation."""

    X: np.ndarray
    y: np.ndarray
    user: str = ""


@dataclass(frozen=True, eq=False)
class Ranker:
    """A fitted ranker: trees over :data:`FEATURES`, the item statistics its features read, the
    blend weights of its ``blend`` feature and how many candidates each source proposes."""

    trees: TreeEnsemble
    stats: ItemStats
    weights: Mapping[str, float]
    candidates: int = 30
    prior: float = 0.0
    info: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None

    def score(self, X: np.ndarray) -> np.ndarray:
        """Ranking scores (higher first) for feature rows ``[n, len(FEATURES)]``."""
        if X.shape[0] == 0:
            return np.zeros(0)
        X = np.asarray(X, dtype=np.float64)
        return np.asarray(self.trees.raw(lightgbm_zeros(X))) + self.prior * X[:, BLEND_COLUMN]

    def order(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row indices best first and the rows' scores; ties go to the higher blend score,
        then the earlier row."""
        scores = self.score(X)
        return np.lexsort((np.arange(len(scores)), -X[:, BLEND_COLUMN], -scores)), scores

    def save(self, directory: Path, version: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        savez: Any = np.savez  # the arrays are keyword arrays, not np.savez options
        savez(directory / "trees.npz", allow_pickle=False, **self.trees.arrays())
        savez(directory / "stats.npz", allow_pickle=False, **self.stats.arrays())
        (directory / "items.json").write_text(json.dumps(list(self.stats.item_ids)))
        manifest = {
            "format": FORMAT,
            "version": version,
            "features": list(FEATURES),
            "weights": dict(self.weights),
            "candidates": self.candidates,
            "prior": self.prior,
            "provenance": dict(self.trees.provenance),
            "info": dict(self.info),
        }
        (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        try:
            manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
            item_ids = json.loads((directory / "items.json").read_text(encoding="utf-8"))
            with np.load(directory / "trees.npz", allow_pickle=False) as npz:
                tree_arrays = {k: npz[k] for k in npz.files}
            with np.load(directory / "stats.npz", allow_pickle=False) as npz:
                stats = ItemStats(
                    tuple(str(i) for i in item_ids),
                    npz["pop"].astype(np.float64),
                    npz["mean_ts"].astype(np.float64),
                    npz["last_ts"].astype(np.float64),
                    npz["history"].astype(np.float64),
                    npz["recency"].astype(np.float64),
                )
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"cannot read ranker artifact in {directory}: {exc}") from exc
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"unknown ranker format {manifest.get('format')!r} in {directory}")
        if manifest.get("features") != list(FEATURES):
            raise ArtifactError(
                f"the ranker in {directory} was trained on other features than this version "
                "computes: train a new one (`tailor train ranker`)"
            )
        try:
            trees = TreeEnsemble.from_arrays(
                tree_arrays, n_features=len(FEATURES), provenance=manifest.get("provenance")
            )
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"bad ranker trees in {directory}: {exc}") from exc
        return cls(
            trees,
            stats,
            {str(k): float(v) for k, v in manifest["weights"].items()},
            int(manifest["candidates"]),
            float(manifest.get("prior", 0.0)),
            manifest.get("info", {}),
            manifest.get("version"),
        )


class RankerStore(VersionedStore):
    """Versioned rankers under ``root`` (``<data dir>/models/ranker`` in the gateway)."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        self.artifacts = ArtifactStore(root, kind="ranker", marker=MANIFEST, keep=keep)

    def write(self, ranker: Ranker) -> str:
        version = self.artifacts.write(lambda tmp, v: ranker.save(tmp, v))
        return version

    def load(self, version: str) -> Ranker:
        if not self.artifacts.exists(version):
            raise ArtifactError(f"no ranker version {version!r} in {self.root}")
        return replace(Ranker.load(self.artifacts.path(version)), version=version)


class RankerSlot:
    """The serving ranker (or None: the tuned blend orders the candidates); swapped whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.model: Ranker | None = None

    @property
    def version(self) -> str | None:
        model = self.model
        return model.version if model is not None else None

    def swap(self, model: Ranker | None) -> None:
        with self._lock:
            self.model = model


def lightgbm_zeros(X: np.ndarray) -> np.ndarray:
    """``X`` with the values LightGBM's predictor reads as zero (|x| <= 1e-35, its
    ``kZeroThreshold``) set to zero, so the exported trees split them as LightGBM does."""
    return np.where(np.abs(X) <= _ZERO, 0.0, X)

"""`SegmentModel`, the versioned artifact, and `train_segments`, which builds one.

Online assignment is the hot path (every profile update, every request that asks for a
segment): `assign` folds log -> scale -> PCA -> nearest centroid into one (d, k) matrix and a
bias vector precomputed at load, so a call is a list comprehension, one small matmul and an
argmin — no sklearn, no per-call allocation beyond the feature vector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from math import isfinite, log1p
from operator import itemgetter
from typing import cast

import numpy as np
from numpy.typing import NDArray

from segments.features import FeatureRow, FeatureTransform, FloatArray, feature_matrix, log_space
from segments.features import fit_transform as fit_feature_transform
from segments.fit import NOISE, FitMetrics, IntArray, assign_to_cores, fit_clusters, group_means
from segments.identity import match_ids, profile_distances
from segments.naming import cluster_traits, name_segments
from segments.rules import CompiledRule, compile_rule
from segments.segments_file import SegmentsFile
from segments.types import (
    UNCLUSTERED_ID,
    RuleSegment,
    Segment,
    SegmentError,
    SegmentingConfig,
    SegmentKind,
    SegmentTrait,
)

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class SegmentModel:
    """A trained segmentation.

    - `segment_ids[i]` names row i of `centroids` (k, p, model space) and `profiles` (k, d,
      log-space member means, used to match clusters across retrains).
    - `segments`: metadata of the cluster segments (plus "unclustered" for DBSCAN), by size.
    - `pop_mean`/`pop_std` (d,): the training population in log space (trait z-scores).
    - DBSCAN only: `core_points` (m, p), `core_labels` (m,) row indexes into `segment_ids`, `eps`.
    - `next_id`: the next fresh cluster number, so ids are never reused across versions.
    """

    config: SegmentingConfig
    transform: FeatureTransform
    segment_ids: list[str]
    centroids: FloatArray
    profiles: FloatArray
    segments: list[Segment]
    metrics: FitMetrics
    pop_mean: FloatArray
    pop_std: FloatArray
    n_users: int
    next_id: int
    built_at: datetime
    rules: list[RuleSegment] = field(default_factory=list)
    core_points: FloatArray | None = None
    core_labels: IntArray | None = None
    eps: float | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        t = self.transform
        self._names = t.features
        self._log_names = tuple(n for n, lg in zip(t.features, t.log_mask, strict=True) if lg)
        self._linear_names = tuple(
            n for n, lg in zip(t.features, t.log_mask, strict=True) if not lg
        )
        self._get_log = _getter(self._log_names)
        self._get_linear = _getter(self._linear_names)
        # column order of the online vector: log features first, then linear ones
        self._fast_order = np.concatenate([np.flatnonzero(t.log_mask), np.flatnonzero(~t.log_mask)])
        self._ids = np.array([*self.segment_ids, UNCLUSTERED_ID], dtype=object)
        self._compiled: list[tuple[str, CompiledRule]] = [
            (r.id, compile_rule(r.expression)) for r in self.rules
        ]
        # Fold the affine transform into the distance: with y = ((x - c)/s - m) W^T and
        # A = W^T C^T (d, k), |y - C_j|² = |y|² + bias_j + (x @ M)_j where
        # M = -2 A / s and bias = |C|² + 2 (c/s + m) @ A. |y|² is the same for every j.
        w = t.pca_components if t.pca_components is not None else np.eye(len(t.features))
        m = t.pca_mean if t.pca_mean is not None else np.zeros(len(t.features))
        a = w.T @ self.centroids.T
        self._m = np.ascontiguousarray(-2.0 * a / t.scale[:, None])
        self._bias = (self.centroids**2).sum(axis=1) + 2.0 * (t.center / t.scale + m) @ a
        # Online path: rows in `_vector` order plus the bias as a last row (the vector ends in
        # 1.0), so one dot product yields every score — fewer numpy calls per user.
        self._m_fast = np.ascontiguousarray(np.vstack([self._m[self._fast_order], self._bias]))

    @property
    def k(self) -> int:
        return len(self.segment_ids)

    def _vector(self, features: Mapping[str, float]) -> list[float]:
        """The user's log-space vector, log columns first, then linear ones, then 1.0 (the row
        order of `_m_fast`)."""
        try:
            # Fast path: profiles expose every feature; itemgetter does the lookups in C.
            logs, linear = self._get_log(features), self._get_linear(features)
        except KeyError:
            get = features.get
            logs = tuple(get(n, 0.0) for n in self._log_names)
            linear = tuple(get(n, 0.0) for n in self._linear_names)
        if not logs or min(logs) >= 0.0:
            x = list(map(log1p, logs))
        else:
            x = [log1p(v) if v > 0.0 else 0.0 for v in logs]
        x.extend(linear)
        x.append(1.0)  # picks up the bias row of `_m_fast`
        return x

    def assign(self, features: Mapping[str, float]) -> str:
        """The cluster segment id of one user (missing features = 0): nearest centroid; DBSCAN:
        the nearest core point's cluster if within eps, else "unclustered"."""
        x = self._vector(features)
        if self.core_points is not None:
            z = np.empty(len(x) - 1)
            z[self._fast_order] = x[:-1]
            return str(self._ids[self._assign_cores(z[None, :])[0]])
        if not self.segment_ids:
            return UNCLUSTERED_ID
        # Back to a Python list at once: for k of a few, list min/index beat numpy's argmin and
        # scalar boxing by ~20 % of the whole call.
        scores = np.dot(x, self._m_fast).tolist()
        if not isfinite(sum(scores)):  # NaN/inf in: never guess a segment
            raise SegmentError("features must be finite numbers")
        return self.segment_ids[scores.index(min(scores))]

    def _assign_cores(self, x_log: FloatArray) -> IntArray:
        t = self.transform
        z = t.project((x_log - t.center) / t.scale)
        assert self.core_points is not None and self.core_labels is not None
        return assign_to_cores(z, self.core_points, self.core_labels, self.eps or 0.0)

    def assign_indices(self, x_raw: FloatArray, chunk: int = 65_536) -> IntArray:
        """Row index into `segment_ids` per user of a raw (n, d) matrix; NOISE (-1) for DBSCAN's
        unclustered."""
        if x_raw.ndim != 2 or x_raw.shape[1] != len(self._names):
            raise SegmentError(f"expected a (n, {len(self._names)}) matrix, got {x_raw.shape}")
        out = np.empty(x_raw.shape[0], dtype=np.int64)
        for start in range(0, x_raw.shape[0], chunk):
            block = log_space(x_raw[start : start + chunk], self.transform.log_mask)
            if self.core_points is not None:
                out[start : start + chunk] = self._assign_cores(block)
            elif self.segment_ids:
                out[start : start + chunk] = (block @ self._m + self._bias).argmin(axis=1)
            else:
                out[start : start + chunk] = NOISE
        return out

    def assign_many(self, x_raw: FloatArray) -> NDArray[np.object_]:
        """Vectorized `assign`: segment ids (object array of str, shape (n,)) for a raw (n, d)
        matrix whose columns are `config.features` (see `features.feature_matrix`)."""
        return self._ids[self.assign_indices(x_raw)]  # index -1 -> "unclustered"

    def rule_segments(
        self, features: Mapping[str, float], top_categories: Collection[str] = ()
    ) -> list[str]:
        """Ids of the rule segments this user matches, in file order."""
        return [rid for rid, rule in self._compiled if rule(features, top_categories)]

    def all_segments(self) -> list[Segment]:
        """Cluster segments, then rule segments (size -1: rules are evaluated per user)."""
        rules = [Segment(r.id, r.name, r.description, SegmentKind.RULE, -1) for r in self.rules]
        return [*self.segments, *rules]

    def segment(self, segment_id: str) -> Segment:
        for seg in self.all_segments():
            if seg.id == segment_id:
                return seg
        raise SegmentError(f"no segment {segment_id!r}")

    def with_segments_file(self, file: SegmentsFile) -> SegmentModel:
        """A copy with the marketer's names/descriptions and rule segments applied."""
        segments = [
            replace(
                seg,
                name=ov.name if ov.name is not None else seg.name,
                description=ov.description if ov.description is not None else seg.description,
            )
            if (ov := file.overrides.get(seg.id)) is not None
            else seg
            for seg in self.segments
        ]
        return replace(self, segments=segments, rules=list(file.rules), version=None)


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, float]], tuple[float, ...]]:
    """A C-speed `features -> tuple of values` (raises KeyError on a missing feature)."""
    if not names:
        return lambda features: ()
    if len(names) == 1:
        name = names[0]
        return lambda features: (features[name],)
    return cast(Callable[[Mapping[str, float]], tuple[float, ...]], itemgetter(*names))


def train_segments(
    rows: Sequence[FeatureRow],
    config: SegmentingConfig | None = None,
    previous: SegmentModel | None = None,
    *,
    segments_file: SegmentsFile | None = None,
) -> SegmentModel:
    """Fit a new model on `(user_id, features)` rows. With `previous`, clusters that match a
    previous cluster (see `segments.identity`) keep its id and name."""
    config = config or SegmentingConfig()
    _, x = feature_matrix(rows, config.features)
    return train_segments_matrix(x, config, previous, segments_file=segments_file)


def _fresh_id(n: int) -> str:
    return f"c{n}"


def train_segments_matrix(
    x_raw: FloatArray,
    config: SegmentingConfig | None = None,
    previous: SegmentModel | None = None,
    *,
    segments_file: SegmentsFile | None = None,
) -> SegmentModel:
    """`train_segments` on a raw (n, d) matrix (columns = `config.features`); the path for
    millions of users, where building per-user dicts would dominate."""
    config = config or SegmentingConfig()
    started = time.perf_counter()
    transform = fit_feature_transform(x_raw, config)
    fit = fit_clusters(transform.transform(x_raw), config)
    logs = log_space(x_raw, transform.log_mask)
    k = fit.centroids.shape[0]

    # Order clusters by size (largest first) so fresh ids and reports read naturally.
    sizes = np.bincount(fit.labels[fit.labels != NOISE], minlength=k)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    labels = np.where(fit.labels == NOISE, NOISE, rank[np.maximum(fit.labels, 0)])
    centroids = fit.centroids[order]
    clustered = labels != NOISE
    profiles = group_means(logs[clustered], labels[clustered], k)
    raw_means = group_means(x_raw[clustered], labels[clustered], k)
    pop_mean, pop_std = logs.mean(axis=0), logs.std(axis=0)
    traits = cluster_traits(config.features, profiles, raw_means, pop_mean, pop_std)

    inherited: list[str | None] = [None] * k
    prev_by_id: dict[str, Segment] = {}
    if previous is not None and previous.transform.features == transform.features and k:
        dist = profile_distances(
            previous.profiles, profiles, previous.transform.center, previous.transform.scale
        )
        inherited = match_ids(previous.segment_ids, dist, config.match_threshold)
        prev_by_id = {seg.id: seg for seg in previous.segments}
    next_id = previous.next_id if previous is not None else 1
    kept = {prev_by_id[i].name for i in inherited if i is not None}
    fresh = iter(
        name_segments([traits[j] for j in range(k) if inherited[j] is None], reserved=kept)
    )

    ids: list[str] = []
    segments: list[Segment] = []
    for j in range(k):
        prev_id = inherited[j]
        if prev_id is not None:
            seg_id = prev_id
            name, description = prev_by_id[prev_id].name, prev_by_id[prev_id].description
        else:
            seg_id, next_id = _fresh_id(next_id), next_id + 1
            name, description = next(fresh)
        ids.append(seg_id)
        segments.append(
            Segment(seg_id, name, description, SegmentKind.CLUSTER, int(sizes[order[j]]), traits[j])
        )
    if config.algorithm == "dbscan":
        noise = ~clustered
        noise_traits: list[list[SegmentTrait]] = [[]]
        if noise.any():
            noise_traits = cluster_traits(
                config.features,
                logs[noise].mean(axis=0)[None, :],
                x_raw[noise].mean(axis=0)[None, :],
                pop_mean,
                pop_std,
            )
        segments.append(
            Segment(
                UNCLUSTERED_ID,
                "Unclustered",
                "Users outside every dense region (DBSCAN noise).",
                SegmentKind.CLUSTER,
                int(noise.sum()),
                noise_traits[0],
            )
        )
    core_labels = None if fit.core_labels is None else rank[fit.core_labels]
    model = SegmentModel(
        config=config,
        transform=transform,
        segment_ids=ids,
        centroids=centroids,
        profiles=profiles,
        segments=segments,
        metrics=fit.metrics,
        pop_mean=pop_mean,
        pop_std=pop_std,
        n_users=int(x_raw.shape[0]),
        next_id=next_id,
        built_at=datetime.now(UTC),
        core_points=fit.core_points,
        core_labels=core_labels,
        eps=fit.metrics.eps,
    )
    m = fit.metrics
    logger.info(
        "segments trained: %s k=%d on %d users in %.2fs (silhouette %.3f, %d kept ids, %s)",
        m.algorithm,
        m.chosen_k,
        model.n_users,
        time.perf_counter() - started,
        m.silhouette_by_k.get(m.chosen_k, float("nan")),
        sum(i is not None for i in inherited),
        ", ".join(f"{seg.id}={seg.name!r}:{seg.size}" for seg in segments),
    )
    return model.with_segments_file(segments_file) if segments_file is not None else model

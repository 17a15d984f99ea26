"""Clustering in model space: k-means / mini-batch k-means, DBSCAN, Ward. Deterministic per seed.

Every algorithm returns a `FitResult` with labels 0..k-1 (DBSCAN noise = -1), one centroid per
cluster (mean of its members, model space) and its metrics, so `model.py` treats them alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from segments.features import FloatArray
from segments.types import SegmentError, SegmentingConfig

if TYPE_CHECKING:
    from sklearn.cluster import KMeans, MiniBatchKMeans

# scikit-learn and SciPy are imported by the fits that use them, not here: serving (model.py
# assigns with numpy) and every process that only loads a model never pay for them.

IntArray = NDArray[np.int64]
NOISE = -1


@dataclass
class FitMetrics:
    """Model-selection figures. Silhouette in [-1, 1] (higher = better separated); inertia =
    within-cluster sum of squared distances in model space (the elbow curve)."""

    algorithm: str
    chosen_k: int
    silhouette_by_k: dict[int, float] = field(default_factory=dict)
    inertia_by_k: dict[int, float] = field(default_factory=dict)
    eps: float | None = None  # DBSCAN only
    noise_fraction: float | None = None  # DBSCAN only
    fit_sample_size: int | None = None  # Ward/DBSCAN: users the clustering itself saw

    def to_json(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm,
            "chosen_k": self.chosen_k,
            "silhouette_by_k": {str(k): v for k, v in self.silhouette_by_k.items()},
            "inertia_by_k": {str(k): v for k, v in self.inertia_by_k.items()},
            "eps": self.eps,
            "noise_fraction": self.noise_fraction,
            "fit_sample_size": self.fit_sample_size,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FitMetrics:
        sil = data.get("silhouette_by_k") or {}
        ine = data.get("inertia_by_k") or {}
        assert isinstance(sil, dict) and isinstance(ine, dict)
        eps, noise, sample = (
            data.get("eps"),
            data.get("noise_fraction"),
            data.get("fit_sample_size"),
        )
        return cls(
            algorithm=str(data["algorithm"]),
            chosen_k=int(str(data["chosen_k"])),
            silhouette_by_k={int(k): float(v) for k, v in sil.items()},
            inertia_by_k={int(k): float(v) for k, v in ine.items()},
            eps=None if eps is None else float(str(eps)),
            noise_fraction=None if noise is None else float(str(noise)),
            fit_sample_size=None if sample is None else int(str(sample)),
        )


@dataclass
class FitResult:
    """labels (n,) in 0..k-1 or NOISE; centroids (k, p); DBSCAN also keeps its core points
    (m, p) with their labels (m,) for online assignment."""

    labels: IntArray
    centroids: FloatArray
    metrics: FitMetrics
    core_points: FloatArray | None = None
    core_labels: IntArray | None = None


def fit_clusters(z: FloatArray, config: SegmentingConfig) -> FitResult:
    """Cluster the model-space matrix `z` (n, p) with `config.algorithm`."""
    n = z.shape[0]
    if n < config.k_min + 1:
        raise SegmentError(f"need more than {config.k_min} users to segment, got {n}")
    # OpenMP/BLAS pools default to every core; on a shared host (or next to the gateway's own
    # threads) oversubscribed spin-waiting made fits several times slower than one thread.
    with threadpool_limits(limits=config.threads):
        if config.algorithm == "dbscan":
            return _fit_dbscan(z, config)
        if config.algorithm == "ward":
            return _fit_ward(z, config)
        return _fit_kmeans(z, config)


def _rng(config: SegmentingConfig) -> np.random.Generator:
    return np.random.default_rng(config.random_seed)


def _sample(n: int, size: int, rng: np.random.Generator) -> IntArray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def _silhouette(z: FloatArray, labels: IntArray, sample: IntArray) -> float:
    from sklearn.metrics import silhouette_score

    sub = labels[sample]
    if len(np.unique(sub)) < 2:
        return -1.0
    return float(silhouette_score(z[sample], sub))


def _k_range(n: int, config: SegmentingConfig) -> range:
    return range(config.k_min, min(config.k_max, n - 1) + 1)


def group_means(z: FloatArray, labels: IntArray, k: int) -> FloatArray:
    """(k, d) mean of the rows of `z` per label 0..k-1 (labels must be >= 0)."""
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    # One weighted bincount per column: linear, vectorized, and fine for millions of rows.
    sums = np.stack(
        [np.bincount(labels, weights=z[:, j], minlength=k) for j in range(z.shape[1])], axis=1
    )
    return sums / np.maximum(counts, 1.0)[:, None]


def nearest(points: FloatArray, centers: FloatArray, chunk: int = 65_536) -> IntArray:
    """Index of the nearest center for each point (squared Euclidean), in bounded memory."""
    out = np.empty(points.shape[0], dtype=np.int64)
    c_sq = (centers**2).sum(axis=1)
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk]
        # |x - c|² = |x|² - 2 x·c + |c|²; |x|² is constant per row so it drops out of argmin.
        out[start : start + chunk] = (c_sq - 2.0 * block @ centers.T).argmin(axis=1)
    return out


def _fit_kmeans(z: FloatArray, config: SegmentingConfig) -> FitResult:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = z.shape[0]
    rng = _rng(config)
    sample = _sample(n, config.silhouette_sample_size, rng)
    use_minibatch = config.algorithm == "minibatch" or n > config.minibatch_threshold
    best: tuple[float, int, IntArray, FloatArray] | None = None
    metrics = FitMetrics(algorithm="minibatch" if use_minibatch else "kmeans", chosen_k=0)
    for k in _k_range(n, config):
        if use_minibatch:
            model: KMeans | MiniBatchKMeans = MiniBatchKMeans(
                n_clusters=k,
                random_state=config.random_seed,
                batch_size=4096,
                n_init=3,
                max_no_improvement=10,
            )
        else:
            model = KMeans(n_clusters=k, random_state=config.random_seed, n_init=4)
        model.fit(z)
        labels = model.labels_.astype(np.int64)
        metrics.inertia_by_k[k] = float(model.inertia_)
        score = _silhouette(z, labels, sample)
        metrics.silhouette_by_k[k] = score
        if best is None or score > best[0]:
            best = (score, k, labels, np.asarray(model.cluster_centers_, dtype=np.float64))
    assert best is not None
    _, k, labels, centers = best
    metrics.chosen_k = k
    return FitResult(labels=labels, centroids=centers, metrics=metrics)


def knee_eps(z: FloatArray, min_samples: int, tail_quantile: float = 0.99) -> float:
    """eps at the knee of the sorted k-distance curve (k = min_samples): the point farthest
    below the chord from the smallest to the largest k-distance (the "kneedle" construction).

    The curve is cut at `tail_quantile` first: a handful of extreme outliers would otherwise
    stretch the chord, flatten the normalised curve and push the knee (and eps) up until
    distinct clusters merge."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(min_samples, z.shape[0] - 1) + 1).fit(z)
    dist, _ = nn.kneighbors(z)
    curve = np.sort(dist[:, -1])
    curve = curve[: max(int(np.ceil(curve.size * tail_quantile)), 2)]
    x = np.linspace(0.0, 1.0, curve.size)
    span = curve[-1] - curve[0]
    if span <= 0:
        return float(curve[-1]) or 1e-6
    y = (curve - curve[0]) / span
    # The curve is convex and rising; its knee maximizes the gap to the diagonal.
    knee = int(np.argmax(x - y))
    return float(max(curve[knee], 1e-6))


def _fit_dbscan(z: FloatArray, config: SegmentingConfig) -> FitResult:
    from sklearn.cluster import DBSCAN

    n = z.shape[0]
    rng = _rng(config)
    sample = _sample(n, config.dbscan_sample_size, rng)
    zs = z[sample]
    eps = knee_eps(zs, config.dbscan_min_samples)
    db = DBSCAN(eps=eps, min_samples=config.dbscan_min_samples).fit(zs)
    sample_labels = db.labels_.astype(np.int64)
    core_idx = np.asarray(db.core_sample_indices_, dtype=np.int64)
    core_points = zs[core_idx]
    core_labels = sample_labels[core_idx]
    k = int(sample_labels.max()) + 1 if core_idx.size else 0
    labels = assign_to_cores(z, core_points, core_labels, eps)
    labels[sample] = sample_labels  # border points keep DBSCAN's own decision
    clustered = labels != NOISE
    centroids = group_means(z[clustered], labels[clustered], k) if k else np.zeros((0, z.shape[1]))
    metrics = FitMetrics(
        algorithm="dbscan",
        chosen_k=k,
        eps=eps,
        noise_fraction=float(1.0 - clustered.mean()),
        fit_sample_size=int(sample.size),
    )
    sil_sample = _sample(n, config.silhouette_sample_size, rng)
    sil_sample = sil_sample[clustered[sil_sample]]
    if k >= 2 and sil_sample.size > k:
        metrics.silhouette_by_k[k] = _silhouette(z, labels, sil_sample)
    return FitResult(labels, centroids, metrics, core_points, core_labels)


def assign_to_cores(
    points: FloatArray,
    core_points: FloatArray,
    core_labels: IntArray,
    eps: float,
    chunk: int = 8_192,
) -> IntArray:
    """Label of the nearest core point if it lies within eps, else NOISE (batch version of the
    online rule in `SegmentModel.assign`)."""
    out = np.full(points.shape[0], NOISE, dtype=np.int64)
    if core_points.shape[0] == 0:
        return out
    c_sq = (core_points**2).sum(axis=1)
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk]
        d2 = c_sq - 2.0 * block @ core_points.T + (block**2).sum(axis=1)[:, None]
        best = d2.argmin(axis=1)
        ok = d2[np.arange(block.shape[0]), best] <= eps * eps + 1e-12
        out[start : start + chunk] = np.where(ok, core_labels[best], NOISE)
    return out


def _fit_ward(z: FloatArray, config: SegmentingConfig) -> FitResult:
    from scipy.cluster.hierarchy import fcluster, linkage

    n = z.shape[0]
    rng = _rng(config)
    sample = _sample(n, config.ward_sample_size, rng)
    zs = z[sample]
    # One Ward tree, cut at every k: cheaper than refitting per k and nested by construction.
    tree = linkage(zs, method="ward")
    sil_sample = _sample(zs.shape[0], config.silhouette_sample_size, rng)
    metrics = FitMetrics(algorithm="ward", chosen_k=0, fit_sample_size=int(sample.size))
    best: tuple[float, int, IntArray] | None = None
    for k in _k_range(zs.shape[0], config):
        cut = fcluster(tree, t=k, criterion="maxclust").astype(np.int64) - 1
        kk = int(cut.max()) + 1
        centers = group_means(zs, cut, kk)
        metrics.inertia_by_k[k] = float(((zs - centers[cut]) ** 2).sum())
        score = _silhouette(zs, cut, sil_sample)
        metrics.silhouette_by_k[k] = score
        if best is None or score > best[0]:
            best = (score, kk, cut)
    assert best is not None
    _, k, sample_labels = best
    centers = group_means(zs, sample_labels, k)
    labels = nearest(z, centers)
    labels[sample] = sample_labels
    metrics.chosen_k = k
    return FitResult(labels=labels, centroids=centers, metrics=metrics)

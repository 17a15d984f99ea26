"""Feature matrix and the fitted transform: log1p on heavy tails -> robust/standard scaling -> PCA.

The transform is a handful of arrays (`FeatureTransform`) saved with the model, so online
assignment applies exactly the transform the clusters were fit in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from segments.types import SegmentError, SegmentingConfig

FloatArray = NDArray[np.float64]
FeatureRow = tuple[str, Mapping[str, float]]


def feature_matrix(
    rows: Sequence[FeatureRow], features: Sequence[str]
) -> tuple[list[str], FloatArray]:
    """`(user_ids, X)` with X of shape (n_users, len(features)) in raw feature units;
    a missing feature is 0."""
    user_ids = [user_id for user_id, _ in rows]
    x = np.array(
        [[float(values.get(name, 0.0)) for name in features] for _, values in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(features))
    if not np.isfinite(x).all():
        raise SegmentError("features must be finite numbers")
    return user_ids, x


def log_space(x: FloatArray, log_mask: NDArray[np.bool_]) -> FloatArray:
    """Apply ``log1p(max(x, 0))`` to the masked columns (negative counts are clamped, matching
    the online path in `SegmentModel.assign`)."""
    out = np.array(x, dtype=np.float64, copy=True)
    out[:, log_mask] = np.log1p(np.maximum(out[:, log_mask], 0.0))
    return out


@dataclass(frozen=True)
class FeatureTransform:
    """raw (n, d) -> model space (n, p).

    - `features`: column names, d of them; `log_mask` (d,) which columns get log1p.
    - `center`, `scale` (d,): scaled = (log_space - center) / scale.
    - `pca_mean` (d,), `pca_components` (p, d) or both None: model = (scaled - mean) @ comps.T.
    """

    features: tuple[str, ...]
    log_mask: NDArray[np.bool_]
    center: FloatArray
    scale: FloatArray
    pca_mean: FloatArray | None = None
    pca_components: FloatArray | None = None

    @property
    def dim(self) -> int:
        """Dimension p of the model space."""
        if self.pca_components is None:
            return len(self.features)
        return int(self.pca_components.shape[0])

    def scaled(self, x_raw: FloatArray) -> FloatArray:
        """Raw -> scaled space (before PCA); the space retrains are matched in."""
        return (log_space(x_raw, self.log_mask) - self.center) / self.scale

    def transform(self, x_raw: FloatArray) -> FloatArray:
        """Raw -> model space, the space centroids and core points live in."""
        return self.project(self.scaled(x_raw))

    def project(self, scaled: FloatArray) -> FloatArray:
        """Scaled -> model space (identity without PCA)."""
        if self.pca_components is None or self.pca_mean is None:
            return scaled
        return (scaled - self.pca_mean) @ self.pca_components.T

    def arrays(self) -> dict[str, FloatArray]:
        """The arrays to persist (see `from_arrays`)."""
        out: dict[str, FloatArray] = {
            "log_mask": self.log_mask.astype(np.float64),
            "center": self.center,
            "scale": self.scale,
        }
        if self.pca_components is not None and self.pca_mean is not None:
            out["pca_mean"] = self.pca_mean
            out["pca_components"] = self.pca_components
        return out

    @classmethod
    def from_arrays(
        cls, features: Sequence[str], arrays: Mapping[str, FloatArray]
    ) -> FeatureTransform:
        return cls(
            features=tuple(features),
            log_mask=np.asarray(arrays["log_mask"]) > 0.5,
            center=np.asarray(arrays["center"], dtype=np.float64),
            scale=np.asarray(arrays["scale"], dtype=np.float64),
            pca_mean=np.asarray(arrays["pca_mean"]) if "pca_mean" in arrays else None,
            pca_components=(
                np.asarray(arrays["pca_components"]) if "pca_components" in arrays else None
            ),
        )


def _robust_center_scale(z: FloatArray) -> tuple[FloatArray, FloatArray]:
    center = np.median(z, axis=0)
    q75, q25 = np.percentile(z, [75, 25], axis=0)
    scale = q75 - q25
    # Sparse behaviour (e.g. purchases_7d is 0 for most users) has IQR 0; fall back to the
    # standard deviation so the column still carries its signal instead of exploding to x/eps.
    std = z.std(axis=0)
    scale = np.where(scale > 1e-12, scale, std)
    return center, np.where(scale > 1e-12, scale, 1.0)


def fit_transform(x_raw: FloatArray, config: SegmentingConfig) -> FeatureTransform:
    """Fit the transform on the raw training matrix (columns = `config.features`)."""
    if x_raw.ndim != 2 or x_raw.shape[1] != len(config.features):
        raise SegmentError(f"expected a (n, {len(config.features)}) matrix, got {x_raw.shape}")
    if x_raw.shape[0] < 2:
        raise SegmentError("need at least 2 users to fit a transform")
    log_mask = np.array([name in config.log_features for name in config.features], dtype=bool)
    z = log_space(x_raw, log_mask)
    if config.scaler == "robust":
        center, scale = _robust_center_scale(z)
    else:
        center = z.mean(axis=0)
        std = z.std(axis=0)
        scale = np.where(std > 1e-12, std, 1.0)
    transform = FeatureTransform(tuple(config.features), log_mask, center, scale)
    if config.pca_components is None:
        return transform
    scaled = (z - center) / scale
    mean = scaled.mean(axis=0)
    # Deterministic PCA via SVD of the centered matrix; signs fixed so the largest loading of
    # each component is positive (SVD sign is arbitrary and would flip plots between runs).
    _, _, vt = np.linalg.svd(scaled - mean, full_matrices=False)
    comps = vt[: config.pca_components]
    signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    return FeatureTransform(tuple(config.features), log_mask, center, scale, mean, comps)

"""Stable segment ids across retrains: Hungarian matching of new clusters to the previous model's.

Where distances are measured: each cluster is summarised by its *profile* — the mean of its
members' log-space features (before scaling and PCA). Both the previous and the new profiles are
scaled with the **previous** model's center/scale and compared by RMS per-feature distance.

- Not raw space: dollars, counts and seconds share no unit; a threshold there means nothing.
- Not the new model's space: the population (hence the scaling) drifts between trains; judging
  "is this still cluster c3?" with the ruler c3 was defined by keeps ids from moving just
  because the scaler moved.
- Not PCA space: components can rotate or flip sign between fits.

RMS over features (Euclidean / sqrt(d)) keeps `match_threshold` independent of how many features
a config uses: 0.75 means "on average three quarters of a (robust) standard deviation apart".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from segments.features import FloatArray


def profile_distances(
    prev_profiles: FloatArray, new_profiles: FloatArray, center: FloatArray, scale: FloatArray
) -> FloatArray:
    """(m, k) RMS distances between previous (m, d) and new (k, d) log-space profiles, both
    scaled with the previous model's `center`/`scale` (d,)."""
    a = (prev_profiles - center) / scale
    b = (new_profiles - center) / scale
    diff = a[:, None, :] - b[None, :, :]
    return np.sqrt((diff**2).mean(axis=2))


def match_ids(
    prev_ids: Sequence[str],
    distances: FloatArray,
    threshold: float,
) -> list[str | None]:
    """For each new cluster (columns of `distances`), the previous id it inherits, or None when
    it is unmatched or its match is farther than `threshold` (it then gets a fresh id)."""
    out: list[str | None] = [None] * distances.shape[1]
    if distances.size == 0:
        return out
    rows, cols = linear_sum_assignment(distances)
    for r, c in zip(rows, cols, strict=True):
        if distances[r, c] <= threshold:
            out[c] = prev_ids[r]
    return out

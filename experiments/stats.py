"""The statistics of the report (scipy): a two-proportion z-test, the relative lift with its
confidence interval, and the sample-ratio-mismatch chi-squared test.

* ``z_test(x_c, n_c, x_t, n_t)``: two-sided test of equal proportions with the pooled standard
  error, ``z = (p_t - p_c) / sqrt(p (1 - p) (1/n_c + 1/n_t))``, ``p = (x_c + x_t)/(n_c + n_t)``.
* ``relative_lift``: ``(p_t - p_c) / p_c`` and a ``level`` confidence interval from the delta
  method on the log of the ratio: ``var(log(p_t/p_c)) ≈ (1-p_t)/(n_t p_t) + (1-p_c)/(n_c p_c)``,
  the interval ``exp(log r ± z·se) - 1`` (asymmetric, never below -100%).
* ``srm``: Pearson's chi-squared of the observed exposures against the configured weights; a
  p-value under ``SRM_ALPHA`` (0.001, the customary threshold) means the split is broken and the
  comparison should not be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

SRM_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment against control on one proportion."""

    lift: float | None  # relative, (p_t - p_c) / p_c
    ci_low: float | None
    ci_high: float | None
    z: float | None
    p_value: float | None


def z_test(x_c: int, n_c: int, x_t: int, n_t: int) -> tuple[float | None, float | None]:
    """(z, two-sided p-value); (None, None) when a group is empty or nothing varies."""
    if n_c <= 0 or n_t <= 0:
        return None, None
    pooled = (x_c + x_t) / (n_c + n_t)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    if se == 0:
        return None, None
    z = (x_t / n_t - x_c / n_c) / se
    return z, float(2 * stats.norm.sf(abs(z)))


def relative_lift(
    x_c: int, n_c: int, x_t: int, n_t: int, level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(lift, low, high) of p_t over p_c; Nones where undefined (no control successes)."""
    if n_c <= 0 or n_t <= 0 or x_c <= 0:
        return None, None, None
    p_c, p_t = x_c / n_c, x_t / n_t
    lift = p_t / p_c - 1
    if x_t <= 0:
        return lift, None, None
    se = math.sqrt((1 - p_t) / (n_t * p_t) + (1 - p_c) / (n_c * p_c))
    q = float(stats.norm.ppf(0.5 + level / 2))
    log_r = math.log(p_t / p_c)
    return lift, math.exp(log_r - q * se) - 1, math.exp(log_r + q * se) - 1


def compare(x_c: int, n_c: int, x_t: int, n_t: int, level: float = 0.95) -> Comparison:
    lift, low, high = relative_lift(x_c, n_c, x_t, n_t, level)
    z, p = z_test(x_c, n_c, x_t, n_t)
    return Comparison(lift, low, high, z, p)


def srm(observed: Sequence[int], weights: Sequence[float]) -> tuple[float | None, float | None]:
    """(chi-squared, p-value) of the observed split against ``weights``; Nones without data."""
    total = sum(observed)
    if total <= 0 or len(observed) < 2 or len(observed) != len(weights):
        return None, None
    norm = sum(weights)
    expected = [total * w / norm for w in weights]
    if any(e <= 0 for e in expected):
        return None, None
    result = stats.chisquare(list(observed), expected)
    return float(result.statistic), float(result.pvalue)


def proportion_ci(x: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (for the report's error bars)."""
    if n <= 0:
        return 0.0, 0.0
    q = float(stats.norm.ppf(0.5 + level / 2))
    p = x / n
    centre = (p + q * q / (2 * n)) / (1 + q * q / n)
    half = q * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n)) / (1 + q * q / n)
    return max(0.0, centre - half), min(1.0, centre + half)

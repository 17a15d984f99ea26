"""Contracts of the `segments` package: configuration, segment metadata, rule segments, errors.

Exception hierarchy (everything this package raises on purpose)::

    SegmentError                    base class; map this one to a GraphQL/HTTP error upstream
    ├── RuleError                   a rule expression is invalid; `.position` is a 1-based column
    │   ├── RuleSyntaxError         bad token / unexpected token / unbalanced parentheses
    │   └── UnknownFeatureError     the expression names a feature that does not exist
    ├── SegmentsFileError           the marketer-edited segments TOML/JSON file is malformed
    └── ModelNotFound               no stored model (or not that version) in a `SegmentModelStore`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

# The features a profile exposes (missing key = 0). Order is the column order of every matrix.
FEATURE_NAMES: tuple[str, ...] = (
    "recency_days",  # days since last visit
    "frequency",  # number of purchases / orders
    "monetary",  # total spend
    "avg_order_value",
    "sessions",
    "views_7d",
    "views_30d",
    "clicks_7d",
    "clicks_30d",
    "add_to_cart_7d",
    "add_to_cart_30d",
    "purchases_7d",
    "purchases_30d",
    "views_per_session",
    "avg_session_duration_s",
    "add_to_cart_rate",  # add-to-carts / views, in [0, 1]
    "conversion_rate",  # purchases / sessions
    "engagement_score",
    "category_diversity",  # number of distinct categories interacted with
    "days_since_last_purchase",  # large (e.g. 365) when the user never purchased
)

# Counts, money and durations are heavy-tailed: a handful of whales would otherwise dominate the
# scaled space. Rates are bounded and stay linear.
DEFAULT_LOG_FEATURES: tuple[str, ...] = tuple(
    name for name in FEATURE_NAMES if name not in ("add_to_cart_rate", "conversion_rate")
)

# The list-valued profile attribute rules may test with `"x" in top_categories`.
LIST_ATTRIBUTES: tuple[str, ...] = ("top_categories",)

UNCLUSTERED_ID = "unclustered"

Algorithm = Literal["kmeans", "minibatch", "dbscan", "ward"]
Scaler = Literal["robust", "standard"]


class SegmentKind(StrEnum):
    CLUSTER = "cluster"
    RULE = "rule"


@dataclass(frozen=True, slots=True)
class SegmentTrait:
    """One feature of a segment: `value` is the members' mean raw value (feature units),
    `z_score` how far the segment sits from the population, in population standard deviations
    of the log-transformed feature."""

    name: str
    value: float
    z_score: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment as shown to marketers and API clients. `traits` are sorted by |z_score|,
    standouts first; rule segments have no traits and size -1 (not precomputed)."""

    id: str
    name: str
    description: str
    kind: SegmentKind
    size: int
    traits: list[SegmentTrait] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleSegment:
    """A marketer-defined segment: `expression` in the rule language of `segments.rules`,
    e.g. ``views_7d >= 5 and purchases_30d == 0``."""

    id: str
    name: str
    description: str
    expression: str


@dataclass(frozen=True, slots=True)
class SegmentingConfig:
    """How to turn features into clusters.

    - `features`: columns used (subset/reorder of `FEATURE_NAMES`).
    - `log_features`: columns that get ``log1p(max(x, 0))`` before scaling.
    - `scaler`: "robust" (median / IQR) or "standard" (mean / std).
    - `pca_components`: reduce the scaled space to this many components, None = keep all.
    - `algorithm`: "kmeans" (switches to mini-batch above `minibatch_threshold` users),
      "minibatch" (always), "dbscan", or "ward".
    - `k_min`..`k_max`: inclusive range searched by silhouette (k-means and Ward).
    - `silhouette_sample_size`: silhouette is O(n²); it is computed on at most this many users.
    - `ward_sample_size`: Ward is O(n²) memory; it is fit on this many users, the rest are
      assigned to the nearest centroid. `dbscan_sample_size` plays the same role for DBSCAN
      (the rest go to the nearest core point within eps).
    - `dbscan_min_samples`: DBSCAN's min_samples, also the k of the k-distance curve.
    - `threads`: OpenMP/BLAS threads while fitting (1 = no oversubscription on shared hosts;
      raise it for offline training on a dedicated machine).
    - `match_threshold`: RMS per-feature distance (previous model's scaled units) above which a
      retrained cluster does not inherit a previous id (see `segments.identity`).
    """

    features: tuple[str, ...] = FEATURE_NAMES
    scaler: Scaler = "robust"
    log_features: tuple[str, ...] = DEFAULT_LOG_FEATURES
    pca_components: int | None = None
    algorithm: Algorithm = "kmeans"
    k_min: int = 2
    k_max: int = 8
    minibatch_threshold: int = 50_000
    silhouette_sample_size: int = 4_000
    ward_sample_size: int = 5_000
    dbscan_sample_size: int = 10_000
    dbscan_min_samples: int = 10
    match_threshold: float = 0.75
    threads: int = 1
    random_seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in (*self.features, *self.log_features) if f not in FEATURE_NAMES]
        if unknown:
            raise SegmentError(f"unknown features in config: {unknown}")
        if not 2 <= self.k_min <= self.k_max:
            raise SegmentError(f"need 2 <= k_min <= k_max, got {self.k_min}..{self.k_max}")
        if self.threads < 1:
            raise SegmentError("threads must be >= 1")
        if self.scaler not in ("robust", "standard"):
            raise SegmentError(f"unknown scaler {self.scaler!r}")
        if self.algorithm not in ("kmeans", "minibatch", "dbscan", "ward"):
            raise SegmentError(f"unknown algorithm {self.algorithm!r}")
        if self.pca_components is not None and not 1 <= self.pca_components <= len(self.features):
            raise SegmentError(f"pca_components must be in 1..{len(self.features)}")


class SegmentError(Exception):
    """Base class of every error raised by `segments`."""


class RuleError(SegmentError):
    """An invalid rule expression; `position` is the 1-based column of the offending token."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"column {position}: {message}")
        self.position = position
        self.message = message


class RuleSyntaxError(RuleError):
    """The expression does not parse (bad character, unexpected token, missing parenthesis)."""


class UnknownFeatureError(RuleError):
    """The expression names a feature profiles do not expose."""

    def __init__(self, feature: str, position: int) -> None:
        super().__init__(position, f"unknown feature {feature!r}")
        self.feature = feature


class SegmentsFileError(SegmentError):
    """The segments TOML/JSON file is malformed (wrong shape, or a rule that does not compile)."""


class ModelNotFound(SegmentError):
    """No segment model is stored (or not the requested version)."""

"""segments: users -> segments, by clustering behavioural features and by marketer rules.

Public API (see each module): `train_segments`, `SegmentModel`, `SegmentModelStore`,
`SegmentSizes`, `compile_rule`, `load_segments_file`, `render_report` (in `segments.report`,
imported lazily because it pulls in matplotlib).
"""

from __future__ import annotations

from segments.features import FeatureTransform, feature_matrix
from segments.model import SegmentModel, train_segments, train_segments_matrix
from segments.rules import CompiledRule, compile_rule
from segments.segments_file import SegmentOverride, SegmentsFile, load_segments_file
from segments.sizes import SegmentSizes
from segments.store import SegmentModelStore
from segments.types import (
    FEATURE_NAMES,
    UNCLUSTERED_ID,
    ModelNotFound,
    RuleError,
    RuleSegment,
    RuleSyntaxError,
    Segment,
    SegmentError,
    SegmentingConfig,
    SegmentKind,
    SegmentsFileError,
    SegmentTrait,
    UnknownFeatureError,
)

__all__ = [
    "FEATURE_NAMES",
    "UNCLUSTERED_ID",
    "CompiledRule",
    "FeatureTransform",
    "ModelNotFound",
    "RuleError",
    "RuleSegment",
    "RuleSyntaxError",
    "Segment",
    "SegmentError",
    "SegmentKind",
    "SegmentModel",
    "SegmentModelStore",
    "SegmentOverride",
    "SegmentSizes",
    "SegmentTrait",
    "SegmentingConfig",
    "SegmentsFile",
    "SegmentsFileError",
    "UnknownFeatureError",
    "compile_rule",
    "feature_matrix",
    "load_segments_file",
    "train_segments",
    "train_segments_matrix",
]

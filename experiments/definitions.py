"""The definitions file: GrowthBook features (flags and experiment rules), plus stopped experiments.

Format (JSON; a ``.toml`` file with the same structure is read too, but the CLI writes JSON)::

    {
      "features": {                          # GrowthBook SDK payload "features", verbatim
        "new-checkout": {"defaultValue": false,
                         "rules": [{"condition": {"channel": "mobile"}, "force": true,
                                    "coverage": 0.2, "hashAttribute": "id"}]},
        "recommendations": {"defaultValue": {},
                            "rules": [{"key": "reco-trending", "hashVersion": 2,
                                       "variations": [{}, {"strategy": "trending"}],
                                       "weights": [0.5, 0.5],
                                       "meta": [{"key": "control"}, {"key": "trending"}]}]}
      },
      "stopped": {"<experiment key>": {"feature": "...", "rule": {...}, "stoppedAt": 1767225600}}
    }

Features whose key is ``recommendations`` or starts with ``recommendations.`` are recommendation
parameters (an object: see :class:`RecoParams`); every other feature is a flag the front-end
reads. An experiment is a rule with ``variations``; its variant names are the ``meta`` keys
(``"0"``, ``"1"``, ... without them). Stopping an experiment moves its rule to ``stopped``: the
feature falls back to its other rules and default, and the report still knows the variants.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECO_FEATURE = "recommendations"
STRATEGIES = ("hybrid", "cf", "content", "segment", "trending")
SOURCES = ("cf", "content", "segment", "trending", "context")
_FILTER_KEYS = {"categories", "excludeCategories", "priceMin", "priceMax", "availableOnly"}
_PARAM_KEYS = {"strategy", "weights", "diversity", "maxPerCategory", "first", "filter"}
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class DefinitionError(ValueError):
    """The definitions file (or a definition given to the CLI) is invalid; says where."""


def is_reco_feature(key: str) -> bool:
    return key == RECO_FEATURE or key.startswith(RECO_FEATURE + ".")


def check_key(key: str, what: str) -> str:
    if not key or len(key) > 64 or not set(key) <= _KEY_CHARS:
        raise DefinitionError(f"{what} {key!r}: use 1-64 letters, digits, '-', '_' or '.'")
    return key


@dataclass(frozen=True, slots=True)
class RecoParams:
    """What a recommendation variant sets (None/empty: the request's own value).

    ``strategy`` (hybrid|cf|content|segment|trending), ``weights`` (source -> blend weight),
    ``diversity`` (0-1), ``max_per_category``, ``first`` (number of items), ``filter`` (keys of
    the GraphQL ``ItemFilterInput``: categories, excludeCategories, priceMin, priceMax,
    availableOnly)."""

    strategy: str | None = None
    weights: Mapping[str, float] | None = None
    diversity: float | None = None
    max_per_category: int | None = None
    first: int | None = None
    filter: Mapping[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self == RecoParams()

    def merged(self, other: RecoParams) -> RecoParams:
        """``other`` over ``self`` (filters merged key by key)."""
        return RecoParams(
            strategy=other.strategy or self.strategy,
            weights=other.weights if other.weights is not None else self.weights,
            diversity=other.diversity if other.diversity is not None else self.diversity,
            max_per_category=other.max_per_category or self.max_per_category,
            first=other.first or self.first,
            filter={**self.filter, **other.filter},
        )


def _number(value: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DefinitionError(f"{where}: expected a number")
    if not lo <= value <= hi:
        raise DefinitionError(f"{where}: {value} is outside [{lo}, {hi}]")
    return float(value)


def reco_params(value: Any, where: str) -> RecoParams:
    """Validate one recommendation variant's value (an object; ``{}`` changes nothing)."""
    if value is None:
        return RecoParams()
    if not isinstance(value, dict):
        raise DefinitionError(f"{where}: recommendation parameters must be an object")
    unknown = set(value) - _PARAM_KEYS
    if unknown:
        raise DefinitionError(
            f"{where}: unknown parameter(s) {sorted(unknown)}; known: {sorted(_PARAM_KEYS)}"
        )
    strategy = value.get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise DefinitionError(f"{where}.strategy: {strategy!r} is not one of {STRATEGIES}")
    weights = value.get("weights")
    if weights is not None:
        if not isinstance(weights, dict) or not set(weights) <= set(SOURCES):
            raise DefinitionError(f"{where}.weights: an object keyed by sources {SOURCES}")
        weights = {k: _number(w, f"{where}.weights.{k}", 0.0, 100.0) for k, w in weights.items()}
    diversity = value.get("diversity")
    if diversity is not None:
        diversity = _number(diversity, f"{where}.diversity", 0.0, 1.0)
    per_cat = value.get("maxPerCategory")
    if per_cat is not None:
        per_cat = int(_number(per_cat, f"{where}.maxPerCategory", 1, 1000))
    first = value.get("first")
    if first is not None:
        first = int(_number(first, f"{where}.first", 1, 1000))
    filt = value.get("filter") or {}
    if not isinstance(filt, dict) or not set(filt) <= _FILTER_KEYS:
        raise DefinitionError(f"{where}.filter: an object with keys among {sorted(_FILTER_KEYS)}")
    return RecoParams(strategy, weights, diversity, per_cat, first, dict(filt))


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    """One experiment as defined: its feature, variant names and values, and whether it runs."""

    key: str
    feature: str
    variants: tuple[str, ...]
    values: tuple[Any, ...]
    weights: tuple[float, ...]
    coverage: float
    condition: Mapping[str, Any] | None
    stopped_at: float | None = None

    @property
    def running(self) -> bool:
        return self.stopped_at is None

    @property
    def control(self) -> str:
        return self.variants[0]


def variant_names(rule: Mapping[str, Any]) -> tuple[str, ...]:
    variations = rule.get("variations") or []
    meta = rule.get("meta") or []
    names = []
    for i in range(len(variations)):
        m = meta[i] if i < len(meta) and isinstance(meta[i], dict) else {}
        names.append(str(m.get("key", i)))
    return tuple(names)


def _info(feature: str, rule: Mapping[str, Any], stopped_at: float | None) -> ExperimentInfo:
    variations = list(rule.get("variations") or [])
    n = len(variations)
    weights = rule.get("weights") or [1.0 / n] * n
    return ExperimentInfo(
        key=str(rule.get("key") or feature),
        feature=feature,
        variants=variant_names(rule),
        values=tuple(variations),
        weights=tuple(float(w) for w in weights),
        coverage=float(rule.get("coverage", 1.0)),
        condition=rule.get("condition"),
        stopped_at=stopped_at,
    )


@dataclass(frozen=True)
class Definitions:
    """A parsed definitions file. ``revision``: a digest of its content (cache keys use it)."""

    features: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stopped: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    revision: str = ""

    @property
    def experiments(self) -> dict[str, ExperimentInfo]:
        """Every experiment, running ones and stopped ones, by key."""
        out: dict[str, ExperimentInfo] = {}
        for name, stopped in self.stopped.items():
            out[name] = _info(str(stopped["feature"]), stopped["rule"], stopped.get("stoppedAt"))
        for fkey, feat in self.features.items():
            for rule in feat.get("rules") or ():
                if rule.get("variations"):
                    info = _info(fkey, rule, None)
                    out[info.key] = info
        return out

    def to_json(self) -> dict[str, Any]:
        return {"features": self.features, "stopped": self.stopped}


def parse(data: Any, *, source: str = "definitions") -> Definitions:
    """Validate a definitions document (see the module docstring)."""
    if not isinstance(data, dict):
        raise DefinitionError(f"{source}: expected an object with `features`")
    unknown = set(data) - {"features", "stopped"}
    if unknown:
        raise DefinitionError(f"{source}: unknown top-level key(s) {sorted(unknown)}")
    features = data.get("features") or {}
    stopped = data.get("stopped") or {}
    if not isinstance(features, dict) or not isinstance(stopped, dict):
        raise DefinitionError(f"{source}: `features` and `stopped` must be objects")
    seen: set[str] = set()
    for fkey, feat in features.items():
        where = f"{source}: features.{fkey}"
        check_key(fkey, "feature")
        if not isinstance(feat, dict) or not set(feat) <= {"defaultValue", "rules"}:
            raise DefinitionError(f"{where}: an object with `defaultValue` and `rules`")
        rules = feat.get("rules") or []
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise DefinitionError(f"{where}.rules: a list of objects")
        values = [("defaultValue", feat.get("defaultValue"))]
        for i, rule in enumerate(rules):
            _check_rule(rule, f"{where}.rules[{i}]")
            if "force" in rule:
                values.append((f"rules[{i}].force", rule["force"]))
            for j, v in enumerate(rule.get("variations") or ()):
                values.append((f"rules[{i}].variations[{j}]", v))
            if rule.get("variations"):
                key = str(rule.get("key") or fkey)
                if key in seen:
                    raise DefinitionError(f"{where}.rules[{i}]: experiment {key!r} defined twice")
                seen.add(key)
        if is_reco_feature(fkey):
            for path, v in values:
                reco_params(v, f"{where}.{path}")
    for key, entry in stopped.items():
        if not isinstance(entry, dict) or "feature" not in entry or "rule" not in entry:
            raise DefinitionError(f"{source}: stopped.{key}: needs `feature` and `rule`")
        if key in seen:
            raise DefinitionError(f"{source}: experiment {key!r} is both running and stopped")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    revision = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return Definitions(features=features, stopped=stopped, revision=revision)


def _check_rule(rule: Mapping[str, Any], where: str) -> None:
    variations = rule.get("variations")
    if variations is not None:
        if not isinstance(variations, list) or len(variations) < 2:
            raise DefinitionError(f"{where}.variations: at least two variations")
        check_key(str(rule.get("key") or ""), f"{where}.key: experiment")
        names = variant_names(rule)
        if len(set(names)) != len(names):
            raise DefinitionError(f"{where}.meta: variant keys must differ")
        for name in names:
            check_key(name, f"{where}: variant")
        weights = rule.get("weights")
        if weights is not None and (
            not isinstance(weights, list)
            or len(weights) != len(variations)
            or abs(sum(weights) - 1.0) > 1e-6
        ):
            raise DefinitionError(f"{where}.weights: one per variation, summing to 1")
    elif "force" not in rule:
        raise DefinitionError(f"{where}: a rule needs `force` or `variations`")
    coverage = rule.get("coverage")
    if coverage is not None:
        _number(coverage, f"{where}.coverage", 0.0, 1.0)
    condition = rule.get("condition")
    if condition is not None and not isinstance(condition, dict):
        raise DefinitionError(f"{where}.condition: a GrowthBook condition object")


def load(path: Path) -> Definitions:
    """Read and validate the file; a missing file is no definitions at all."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Definitions()
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise DefinitionError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {exc}"
        ) from None
    return parse(data, source=str(path))


def save(path: Path, defs: Definitions) -> None:
    """Write atomically (a temp file renamed over it): a running gateway never reads half."""
    if path.suffix.lower() == ".toml":
        raise DefinitionError(f"{path}: the CLI writes JSON definitions only; use a .json file")
    parse(defs.to_json(), source=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(defs.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)

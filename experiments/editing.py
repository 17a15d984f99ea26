"""Edits of the definitions the CLI makes (each returns new, validated :class:`Definitions`)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.definitions import (
    DefinitionError,
    Definitions,
    check_key,
    is_reco_feature,
    parse,
)


def _doc(defs: Definitions) -> dict[str, Any]:
    return copy.deepcopy({"features": dict(defs.features), "stopped": dict(defs.stopped)})


def create_experiment(
    defs: Definitions,
    key: str,
    variants: Sequence[tuple[str, Any]],
    *,
    feature: str = "recommendations",
    weights: Sequence[float] | None = None,
    coverage: float = 1.0,
    condition: Mapping[str, Any] | None = None,
) -> Definitions:
    """Add experiment ``key`` as a rule of ``feature`` (created when missing, its default the
    first variant's value; ``{}`` for recommendation features). ``weights`` are normalized;
    equal by default. Hashes the subject's ``id`` (its profile key) with GrowthBook hash v2."""
    check_key(key, "experiment")
    check_key(feature, "feature")
    if len(variants) < 2:
        raise DefinitionError("an experiment needs at least two variants")
    if key in defs.experiments:
        raise DefinitionError(f"experiment {key!r} exists already (stopped ones too)")
    if weights is None:
        weights = [1.0] * len(variants)
    if len(weights) != len(variants) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise DefinitionError("--weights: one non-negative weight per variant")
    total = float(sum(weights))
    normalized = [w / total for w in weights]
    normalized[-1] = 1.0 - sum(normalized[:-1])  # exactly 1 for the file's check
    rule: dict[str, Any] = {
        "key": key,
        "hashAttribute": "id",
        "hashVersion": 2,
        "variations": [value for _name, value in variants],
        "weights": normalized,
        "coverage": coverage,
        "meta": [{"key": name} for name, _value in variants],
    }
    if condition:
        rule["condition"] = dict(condition)
    doc = _doc(defs)
    feat = doc["features"].setdefault(
        feature,
        {"defaultValue": {} if is_reco_feature(feature) else variants[0][1], "rules": []},
    )
    feat.setdefault("rules", []).append(rule)
    return parse(doc, source="the new experiment")


def stop_experiment(defs: Definitions, key: str, now: float) -> Definitions:
    """Take experiment ``key``'s rule out of its feature into ``stopped`` (everyone gets the
    feature's other rules and default from now on; exposures and the report stay)."""
    doc = _doc(defs)
    for fkey, feat in doc["features"].items():
        rules = feat.get("rules") or []
        for i, rule in enumerate(rules):
            if rule.get("variations") and str(rule.get("key") or fkey) == key:
                del rules[i]
                doc["stopped"][key] = {"feature": fkey, "rule": rule, "stoppedAt": now}
                return parse(doc, source="the definitions")
    if key in defs.stopped:
        raise DefinitionError(f"experiment {key!r} is already stopped")
    raise DefinitionError(f"no experiment {key!r}")


def set_flag(
    defs: Definitions,
    key: str,
    value: Any,
    *,
    condition: Mapping[str, Any] | None = None,
    coverage: float | None = None,
) -> Definitions:
    """Set flag ``key``: without targeting its default value; with a ``condition`` and/or a
    ``coverage`` (percentage rollout, hashed on the subject's id) a rule forcing ``value``
    (replacing an earlier force rule with the same condition)."""
    check_key(key, "flag")
    doc = _doc(defs)
    feat = doc["features"].setdefault(key, {"defaultValue": None, "rules": []})
    if condition is None and coverage is None:
        feat["defaultValue"] = value
    else:
        rules = [
            r
            for r in feat.get("rules") or []
            if r.get("variations") or r.get("condition") != (dict(condition or {}) or None)
        ]
        rule: dict[str, Any] = {"force": value, "hashAttribute": "id"}
        if condition:
            rule["condition"] = dict(condition)
        if coverage is not None:
            rule["coverage"] = coverage
        rules.insert(0, rule)
        feat["rules"] = rules
    return parse(doc, source=f"flag {key!r}")

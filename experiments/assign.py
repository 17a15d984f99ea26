"""Evaluation of the definitions for one subject with the GrowthBook SDK (``growthbook.core``).

Assignment is GrowthBook's: the variant is chosen from a hash of the experiment's seed (its
key) and the subject's ``id`` attribute (hashVersion 2 by default from the CLI), within the
rule's coverage and weights, after its targeting ``condition``. Experiments with different keys
hash with different seeds, so they are independent. Stickiness is GrowthBook's sticky bucketing:
the subject's stored exposures are handed to the SDK as its sticky-bucket documents, so a
subject keeps the variant it was first served (across restarts, weight changes and identity
merges, which move the exposures to the user's key).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from growthbook.common_types import (
    EvaluationContext,
    Feature,
    GlobalContext,
    Options,
    StackContext,
    UserContext,
)
from growthbook.core import eval_feature
from growthbook.growthbook import InMemoryStickyBucketService

from experiments.definitions import (
    Definitions,
    RecoParams,
    is_reco_feature,
    reco_params,
    variant_names,
)


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is evaluated: ``key`` is the profile key the hash uses (None: nobody, no experiment
    applies); the rest are the targeting attributes (see :meth:`attributes`)."""

    key: str | None
    user_id: str | None = None
    segment: str | None = None
    segments: tuple[str, ...] = ()
    channel: str | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    def attributes(self) -> dict[str, Any]:
        """GrowthBook attributes: ``id``, ``userId``, ``anonymous``, ``signedIn``, ``segment``
        (cluster), ``segments`` (cluster and rule segments), ``channel``, ``traits``."""
        return {
            "id": self.key or "",
            "userId": self.user_id,
            "anonymous": self.anonymous,
            "signedIn": not self.anonymous,
            "segment": self.segment,
            "segments": list(self.segments),
            "channel": self.channel,
            "traits": dict(self.traits),
        }


@dataclass(frozen=True, slots=True)
class Assignment:
    """The outcome of evaluating every feature for one subject.

    ``variants``: experiment -> variant the subject is in; ``reco_variants``: those of
    recommendation features; ``flags``: every other feature's value; ``reco``: the merged
    recommendation parameters."""

    variants: Mapping[str, str] = field(default_factory=dict)
    reco_variants: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, Any] = field(default_factory=dict)
    reco: RecoParams = field(default_factory=RecoParams)
    revision: str = ""

    @property
    def reco_label(self) -> str:
        """The recommendation variants as one string (``exp=variant;…``, '' for none)."""
        return variants_label(self.reco_variants)

    @property
    def private_key(self) -> str:
        """A digest of everything a personal answer may depend on ('' without definitions)."""
        if not self.revision:
            return ""
        doc = json.dumps(
            [self.revision, self.variants, self.flags], sort_keys=True, default=str
        ).encode()
        return hashlib.sha256(doc).hexdigest()[:16]


NOBODY = Assignment()


def variants_label(variants: Mapping[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(variants.items()))


def parse_label(label: str) -> dict[str, str]:
    """The inverse of :func:`variants_label` (malformed parts are dropped)."""
    out: dict[str, str] = {}
    for part in label.split(";"):
        k, sep, v = part.partition("=")
        if sep and k and v:
            out[k] = v
    return out


def _with_meta(feature: Mapping[str, Any]) -> dict[str, Any]:
    """The feature with every experiment rule's ``meta`` spelled out (``{"key": "0"}``, …):
    GrowthBook finds a sticky variant by its meta key."""
    out = dict(feature)
    rules = []
    for rule in feature.get("rules") or ():
        rule = dict(rule)
        variations = rule.get("variations")
        if variations:
            meta = list(rule.get("meta") or [])
            rule["meta"] = [
                {**(meta[i] if i < len(meta) else {}), "key": name}
                for i, name in enumerate(variant_names(rule))
            ]
        rules.append(rule)
    out["rules"] = rules
    return out


class Evaluator:
    """GrowthBook evaluation over one parsed :class:`Definitions` (immutable; swap it)."""

    def __init__(self, defs: Definitions) -> None:
        self.defs = defs
        features = {k: Feature(**_with_meta(v)) for k, v in defs.features.items()}
        # The SDK persists sticky buckets through this service unless the context brings its
        # own saver; we bring one (a no-op: exposures are written by the service), so this
        # in-memory instance only switches sticky bucketing on.
        self._global = GlobalContext(
            options=Options(api_host=None, sticky_bucket_service=InMemoryStickyBucketService()),
            features=features,
        )
        self._bucket = {
            str(r.get("key") or k): int(r.get("bucketVersion") or 0)
            for k, v in defs.features.items()
            for r in v.get("rules") or ()
            if r.get("variations")
        }
        conditions = json.dumps(
            [r.get("condition") for f in defs.features.values() for r in f.get("rules") or ()],
            default=str,
        )
        # Whether any targeting reads the traits (the caller then loads them; else it may not).
        self.needs_traits = '"traits' in conditions
        self._memo: LRUCache[tuple[Any, ...], Assignment] = LRUCache(8192)
        self._memo_lock = threading.Lock()
        self._experiment_of = {
            (info.feature, info.key): info for info in defs.experiments.values() if info.running
        }

    def evaluate(self, subject: Subject, sticky: Mapping[str, str]) -> Assignment:
        """Every feature for ``subject``; ``sticky``: experiment -> variant already served.

        Memoized (bounded LRU) by everything the evaluation reads: the subject's attributes and
        its sticky assignments -- the definitions are fixed for one evaluator."""
        if not self.defs.features:
            return NOBODY
        key = (
            subject.key,
            subject.user_id,
            subject.segment,
            subject.segments,
            subject.channel,
            json.dumps(subject.traits, sort_keys=True, default=str) if subject.traits else "",
            tuple(sorted(sticky.items())),
        )
        with self._memo_lock:
            found = self._memo.get(key)
        if found is None:
            found = self._evaluate(subject, sticky)
            with self._memo_lock:
                self._memo[key] = found
        return found

    def _evaluate(self, subject: Subject, sticky: Mapping[str, str]) -> Assignment:
        docs: dict[str, Any] = {}
        if subject.key:
            docs[f"id||{subject.key}"] = {
                "attributeName": "id",
                "attributeValue": subject.key,
                "assignments": {f"{k}__{self._bucket.get(k, 0)}": v for k, v in sticky.items()},
            }
        user = UserContext(attributes=subject.attributes(), sticky_bucket_assignment_docs=docs)
        variants: dict[str, str] = {}
        reco_variants: dict[str, str] = {}
        flags: dict[str, Any] = {}
        reco = RecoParams()
        for key in sorted(self.defs.features):
            ctx = EvaluationContext(
                user=user,
                global_ctx=self._global,
                stack=StackContext(evaluated_features=set()),
                save_sticky_bucket_doc=lambda _doc: None,
            )
            result = eval_feature(key, ctx)
            exp, res = result.experiment, result.experimentResult
            if exp is not None and res is not None and res.inExperiment:
                variants[exp.key] = str(res.key)
                if is_reco_feature(key):
                    reco_variants[exp.key] = str(res.key)
            if is_reco_feature(key):
                reco = reco.merged(reco_params(result.value, key))
            else:
                flags[key] = result.value
        return Assignment(variants, reco_variants, flags, reco, self.defs.revision)

    def reco_for(self, variants: Mapping[str, str]) -> RecoParams:
        """The recommendation parameters of named variants (a segment token's): the reco
        features' defaults, then each named variant's value. Unknown names are ignored."""
        params = RecoParams()
        for key in sorted(self.defs.features):
            if not is_reco_feature(key):
                continue
            params = params.merged(reco_params(self.defs.features[key].get("defaultValue"), key))
            for (feature, exp_key), info in self._experiment_of.items():
                if feature != key or exp_key not in variants:
                    continue
                name = variants[exp_key]
                if name in info.variants:
                    value = info.values[info.variants.index(name)]
                    params = params.merged(reco_params(value, key))
        return params

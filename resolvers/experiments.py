"""GraphQL for flags and experiments: ``me { flags { key value } }``, ``me { experiment(key:) {
key variant } }``, and the helpers recommendations use to honour the caller's variants.

* ``subject_for(services, profile_key, request)``: the targeting attributes of a profile (its
  segments, traits for a signed-in user, and the request's ``X-Tailor-Channel``).
* ``person_assignment(info, profile_key)``: one person's flags and variants (a PRIVATE read),
  memoized on the request context.
* ``viewer_variants(info)``: the recommendation variants of a SEGMENT answer -- the gateway's
  (from the credentials or the signed segment token), never the viewer's own lookup, so the
  answer stays SEGMENT-scoped; it tags the answer ``experiment:<key>`` (the edge layer records
  the credentialed caller's exposure from that tag, and purges can target an experiment).
"""

from __future__ import annotations

from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from experiments import Assignment, Subject
from experiments.assign import NOBODY, parse_label
from resolvers.cache_control import add_cache_tags, person_data, recorder_of
from resolvers.context import Services, TailorContext
from resolvers.errors import BadUserInput
from storage.types import user_id_of

CHANNEL_HEADER = "x-tailor-channel"
_MAX_CHANNEL = 32


def request_channel(request: Any) -> str | None:
    """The read path's channel (``X-Tailor-Channel``, e.g. web, mobile, email), lower-cased."""
    headers = getattr(request, "headers", None)
    raw = headers.get(CHANNEL_HEADER) if headers is not None else None
    if not raw:
        return None
    return raw.strip().lower()[:_MAX_CHANNEL] or None


def subject_for(services: Services, profile_key: str | None, request: Any = None) -> Subject:
    """Who is evaluated, with the targeting attributes of ``experiments.Subject``."""
    channel = request_channel(request)
    if profile_key is None:
        return Subject(None, channel=channel)
    user_id = user_id_of(profile_key)
    segment = services.segment_of(profile_key)
    rules = services.segments.rules_of(profile_key)
    traits: dict[str, Any] = {}
    experiments = services.experiments
    if user_id is not None and experiments is not None and experiments.needs_traits:
        record = services.store.get_user(user_id)
        traits = dict(record.traits) if record is not None else {}
    return Subject(
        profile_key,
        user_id=user_id,
        segment=segment,
        segments=tuple(i for i in (segment, *rules) if i),
        channel=channel,
        traits=traits,
    )


def person_assignment(info: Info[TailorContext, Any], profile_key: str) -> Assignment:
    """``profile_key``'s flags and variants for this request (PRIVATE; memoized per request)."""
    person_data(info)
    services = info.context.services
    if services.experiments is None or not services.experiments.active:
        return NOBODY
    memo = info.context.assignments
    found = memo.get(profile_key)
    if found is None:
        subject = subject_for(services, profile_key, info.context.request)
        found = services.experiments.assign(subject)
        memo[profile_key] = found
    return found


def viewer_variants(info: Info[TailorContext, Any]) -> dict[str, str]:
    """The recommendation variants a SEGMENT answer is computed for (see the module doc)."""
    recorder = recorder_of(info)
    if recorder is None:  # no gateway (a script): the viewer's own assignment
        key = info.context.viewer.profile_key
        return dict(person_assignment(info, key).reco_variants) if key else {}
    variants = parse_label(recorder.variants)
    add_cache_tags(info, *(f"experiment:{k}" for k in variants))
    return variants


@strawberry.type(description="A feature flag's value for the caller (any JSON value).")
class Flag:
    key: str
    value: JSON | None


@strawberry.type(description="The caller's variant of an experiment (null: not in it).")
class ExperimentVariant:
    key: str
    variant: str | None


def flags(info: Info[TailorContext, Any], profile_key: str) -> list[Flag]:
    """Every front-end flag (features other than recommendation parameters); the variants of
    flag experiments among them are exposures."""
    found = person_assignment(info, profile_key)
    services = info.context.services
    if services.experiments is not None:
        shown = {k: v for k, v in found.variants.items() if k not in found.reco_variants}
        services.experiments.expose(profile_key, shown)
    return [Flag(key=k, value=cast(JSON, v)) for k, v in sorted(found.flags.items())]


def experiment(info: Info[TailorContext, Any], profile_key: str, key: str) -> ExperimentVariant:
    """The caller's variant of experiment ``key`` (an exposure when in it)."""
    services = info.context.services
    known = services.experiments.definitions.experiments if services.experiments else {}
    if key not in known:
        raise BadUserInput(f"unknown experiment {key!r}")
    found = person_assignment(info, profile_key)
    variant = found.variants.get(key)
    if variant is not None and services.experiments is not None:
        services.experiments.expose(profile_key, {key: variant})
    return ExperimentVariant(key=key, variant=variant)

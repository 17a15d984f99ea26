"""Validation of raw events into :class:`storage.types.EventRecord`.

The rules, per field:

- ``messageId`` (required): id characters, at most 128; the idempotency key.
- ``type`` (required): a built-in type or one declared in ``custom_event_types``.
- ``userId`` and/or ``anonymousId``: at least one; ``identify`` needs both.
- ``itemId``: required for view, click, add_to_cart, remove_from_cart, purchase, rate.
- ``sessionId`` optional id; ``channel`` one of web, mobile, email, offline, api (default api).
- ``timestamp``: ISO-8601 with offset or epoch s/ms; missing -> receive time; more than
  ``clock_skew_s`` in the future -> clamped to the receive time and flagged.
- ``properties`` object (at most 8 kB, nested at most 32 levels, plain JSON): ``price`` >= 0,
  ``quantity`` integer 1..10,000 (a number, or a string of ASCII digits), ``value`` (rate,
  required) 0..10, ``query`` (search, required) 1..500 characters.
- ``traits`` (identify only): an object of CRM traits, at most 8 kB and 32 levels; the configured
  PII traits are hashed (``traits_filter``) before the event is fingerprinted or stored, so an
  e-mail never reaches the event log in clear.
Unknown top-level fields are rejected, so a typo never silently drops data. Every failure is a
:class:`FieldError` naming the field: hostile values (unicode digits, 5,000-digit numbers, deep
nesting) are rejections of that event, never an exception of the batch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from profiles.types import (
    BUILTIN_EVENT_TYPES,
    CHANNELS,
    FLAG_CLAMPED,
    INTERNAL_MESSAGE_PREFIX,
    ITEM_EVENT_TYPES,
    MAX_PROPERTIES_BYTES,
    MAX_TRAITS_BYTES,
)
from storage import fields
from storage.fields import FieldError
from storage.timeutil import MAX_TS, MIN_TS, parse_timestamp
from storage.types import EventRecord, anonymous_key, new_event_record

KNOWN_FIELDS = frozenset(
    {
        "messageId",
        "type",
        "userId",
        "anonymousId",
        "itemId",
        "sessionId",
        "channel",
        "timestamp",
        "properties",
        "traits",
    }
)
_QUANTITY_TEXT = re.compile(r"[0-9]{1,9}").fullmatch  # ASCII digits only: "²".isdigit() is True

TraitsFilter = Callable[[Mapping[str, Any]], Mapping[str, Any]]


_SORTED = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_sha256 = hashlib.sha256
_valid_id = fields.valid_id
_BUILTIN_TYPES = frozenset(BUILTIN_EVENT_TYPES)
_CHANNELS = frozenset(CHANNELS)
# The event types whose properties are checked even when they carry none (required fields or
# a default quantity); for the others an empty properties object needs no work at all.
_PROPERTY_TYPES = frozenset({"purchase", "add_to_cart", "rate", "search"})


def payload_hash(raw: dict[str, Any]) -> str:
    return _sha256(_dumps(raw, option=_SORTED)).hexdigest()[:32]


def validate_event(
    raw: Any,
    *,
    received_at: float,
    custom_types: tuple[str, ...] = (),
    clock_skew_s: float = 300.0,
    traits_filter: TraitsFilter | None = None,
    internal_id: str | None = None,
) -> EventRecord:
    """Validate one raw event; raises :class:`FieldError` naming the first bad field.

    ``traits_filter`` (the PII hasher) is applied to an identify's traits. ``internal_id`` is
    for events the server makes itself (the identify mutation): the record gets that id, which
    must start with :data:`INTERNAL_MESSAGE_PREFIX` (a namespace no client id can enter), and
    ``raw`` must carry no ``messageId``.

    This runs for every ingested event, so each field first takes a fast path for the common
    well-formed value (one C call: a regex, a set lookup, a range check) and falls back to the
    full check, which names the reason, only when that fails. The answers are the same.
    """
    if not isinstance(raw, dict):
        raise FieldError("-", f"an event must be a JSON object, got {type(raw).__name__}")
    if not KNOWN_FIELDS.issuperset(raw):
        unknown = sorted(str(k) for k in raw if k not in KNOWN_FIELDS)
        raise FieldError(unknown[0][:64], "unknown field")
    get = raw.get
    if internal_id is not None:
        if not internal_id.startswith(INTERNAL_MESSAGE_PREFIX) or "messageId" in raw:
            raise ValueError(f"not an internal message id: {internal_id!r}")
        message_id: str | None = internal_id
        raw = {**raw, "messageId": internal_id}
    else:
        message_id = get("messageId")
        if message_id.__class__ is not str or not _valid_id(message_id):
            message_id = fields.ident(raw, "messageId")
    etype = get("type")
    if etype.__class__ is not str or (etype not in _BUILTIN_TYPES and etype not in custom_types):
        if etype is None or etype == "":
            raise FieldError("type", "is required")
        allowed = ", ".join((*BUILTIN_EVENT_TYPES, *custom_types))
        raise FieldError("type", f"unknown event type {str(etype)[:40]!r} (allowed: {allowed})")
    # An absent optional id (None) is None for ident() too: no call for it.
    user_id = get("userId")
    if user_id is not None and (user_id.__class__ is not str or not _valid_id(user_id)):
        user_id = fields.ident(raw, "userId", required=False)
    anonymous_id = get("anonymousId")
    if anonymous_id is not None and (
        anonymous_id.__class__ is not str or not _valid_id(anonymous_id)
    ):
        anonymous_id = fields.ident(raw, "anonymousId", required=False)
    if user_id is None:
        if anonymous_id is None:
            raise FieldError("userId", "userId or anonymousId is required")
        key = anonymous_key(anonymous_id)
    else:
        key = user_id
    if etype == "identify" and (user_id is None or anonymous_id is None):
        raise FieldError(
            "anonymousId" if user_id else "userId", "identify needs both userId and anonymousId"
        )
    item_id = get("itemId")
    if item_id.__class__ is not str or not _valid_id(item_id):
        item_id = fields.ident(raw, "itemId", required=etype in ITEM_EVENT_TYPES)
    session_id = get("sessionId")
    if session_id is not None and (session_id.__class__ is not str or not _valid_id(session_id)):
        session_id = fields.ident(raw, "sessionId", required=False)
    channel = get("channel", "api")
    if (channel.__class__ is not str or channel not in _CHANNELS) and channel not in CHANNELS:
        raise FieldError("channel", f"must be one of {', '.join(CHANNELS)}")

    flags = 0
    ts = get("timestamp")
    if ts is None or ts == "":
        ts = received_at
    else:
        if ts.__class__ is not float or not MIN_TS <= ts <= MAX_TS:
            # The fast path above: epoch seconds in range (milliseconds are all above it).
            try:
                ts = parse_timestamp(ts)
            except ValueError as exc:
                raise FieldError("timestamp", str(exc)) from None
            except OverflowError:  # an integer beyond the float range
                raise FieldError("timestamp", "timestamp must be a finite number") from None
        if ts > received_at + clock_skew_s:
            ts, flags = received_at, FLAG_CLAMPED

    props = get("properties") or {}
    if not isinstance(props, dict):
        raise FieldError("properties", "must be an object")
    if props:  # most events (views, clicks) carry none: nothing to check or copy ({} is new)
        fields.json_document(props, "properties", max_bytes=MAX_PROPERTIES_BYTES)
        props = _validate_properties(etype, dict(props))
    elif etype in _PROPERTY_TYPES:
        props = _validate_properties(etype, props)
    traits = get("traits")
    if traits is not None:
        if etype != "identify":
            raise FieldError("traits", "only identify events carry traits")
        traits = validate_traits(traits)
        if traits_filter is not None:
            traits = dict(traits_filter(traits))
            # The fingerprint is taken of what is stored: no digest of a clear PII value.
            raw = {**raw, "traits": traits}
        props["traits"] = traits

    assert message_id is not None
    return new_event_record(
        message_id,
        etype,
        key,
        ts,
        received_at,
        _sha256(_dumps(raw, option=_SORTED)).hexdigest()[:32],
        user_id,
        anonymous_id,
        item_id,
        session_id,
        channel,
        props,
        flags,
    )


def validate_traits(traits: Any, field: str = "traits") -> dict[str, Any]:
    """An identify's traits: an object of at most :data:`MAX_TRAITS_BYTES` encoded, nested at
    most 32 levels (every path that writes traits applies this: events, ``track``, the
    ``identify`` mutation)."""
    if not isinstance(traits, dict):
        raise FieldError(field, "must be an object")
    fields.json_document(traits, field, max_bytes=MAX_TRAITS_BYTES)
    return dict(traits)


def _validate_properties(etype: str, props: dict[str, Any]) -> dict[str, Any]:
    def prop(name: str) -> str:
        return f"properties.{name}"

    price = props.get("price")
    if price is not None and (price.__class__ is not float or not 0 <= price <= 1e9):
        # Not an in-range float (the common case, kept as it is): the full check names why.
        try:
            props["price"] = fields.number(props, "price", minimum=0, maximum=1e9)
        except FieldError as exc:
            raise FieldError(prop("price"), exc.reason) from None
    if "quantity" in props or etype in ("purchase", "add_to_cart"):
        q = props.get("quantity", 1)
        if isinstance(q, str) and _QUANTITY_TEXT(q):
            q = int(q)
        if isinstance(q, float) and q.is_integer():
            q = int(q)
        if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 10_000:
            raise FieldError(prop("quantity"), "must be an integer from 1 to 10000")
        props["quantity"] = q
    if etype == "rate":
        try:
            props["value"] = fields.number(props, "value", minimum=0, maximum=10, required=True)
        except FieldError as exc:
            raise FieldError(prop("value"), exc.reason) from None
    if etype == "search":
        query = props.get("query")
        if not isinstance(query, str) or not query.strip():
            raise FieldError(prop("query"), "search events need a non-empty query")
        if len(query) > 500:
            raise FieldError(prop("query"), "longer than 500 characters")
    return props

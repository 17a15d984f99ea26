"""What a resolver can reach: the app's services and the request's viewer and loaders."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from strawberry.dataloader import DataLoader

from cache import ObjectCache
from catalog.lookup import CatalogLookup
from experiments import ExperimentService
from profiles.ingest import IngestionService
from profiles.privacy import PrivacyService
from profiles.state import ProfileState
from profiles.types import MAX_USER_TRAITS_BYTES, ProfileConfig
from recommend.content import ContentService
from recommend.conversion_model import ConversionModel
from recommend.engine import Recommender
from recommend.trending import TrendingModel
from resolvers.cache_control import CacheControlRecorder
from resolvers.errors import UpstreamUnavailable
from segments.service import SegmentService
from storage.fields import json_document
from storage.types import EventRecord, ItemRecord, Store, UserRecord, anonymous_key

ADMIN_SCOPES = frozenset({"admin", "service"})
IDENTIFY_EVIDENCE = (
    "you can only identify the anonymous id of your own session: send it as X-Anonymous-Id"
)
READ_SCOPE = "read"
T_co = TypeVar("T_co", covariant=True)
log = logging.getLogger("tailor.resolvers")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking. ``user_id`` comes from a verified token, ``anonymous_id`` from a header.

    What each kind of caller may do, per operation (tests/security/test_hostile_identity.py
    checks the matrix):

    ====================  ===============  ==================  =========  ==================
    operation             anonymous        user (no scope)     ``read``   service / admin
    ====================  ===============  ==================  =========  ==================
    queries               own anon data    own data            own        anyone's
    POST /v1/events       own anon events  own events          FORBIDDEN  anyone's
    ``track``             own anon events  own events          FORBIDDEN  anyone's
    ``identify``          no               own, with evidence  FORBIDDEN  anyone's
    ``setConsent``        no               own                 FORBIDDEN  anyone's
    ``forgetMe``          no               own                 FORBIDDEN  own
    ``forgetUser``        no               no                  FORBIDDEN  admin only
    ====================  ===============  ==================  =========  ==================

    ``read`` (an API key made with ``--scope read``, or a token with only that scope) reads and
    never writes: :attr:`can_write` is checked by the events route and before every mutation.
    An ``X-Anonymous-Id`` is a claim anyone can make: it reaches only the anonymous profile it
    names (:attr:`profile_key`), never the user it was linked to.
    """

    user_id: str | None = None
    anonymous_id: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_privileged(self) -> bool:
        return bool(self.scopes & ADMIN_SCOPES)

    @property
    def can_write(self) -> bool:
        """False for a read-only caller (scope ``read`` without ``admin``/``service``)."""
        return self.is_privileged or READ_SCOPE not in self.scopes

    def write_denied(self, operation: str) -> str | None:
        """Why this caller may not run the write ``operation``, or None when it may."""
        if self.can_write:
            return None
        return f"{operation} needs write access; the read scope can only read"

    def prepare_event(self, raw: Any) -> Any:
        """Default an event's ids to the caller's (privileged callers send ids explicitly)."""
        if self.is_privileged or not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if self.user_id:
            raw.setdefault("userId", self.user_id)
        elif self.anonymous_id:
            raw.setdefault("anonymousId", self.anonymous_id)
        return raw

    def prepare_events(self, raws: list[Any]) -> list[Any]:
        """:meth:`prepare_event` of each event of a batch (the batch itself for a privileged
        caller, whose events are never changed)."""
        if self.is_privileged:
            return raws
        return [self.prepare_event(r) for r in raws]

    @property
    def event_check(self) -> Callable[[EventRecord], tuple[str, str] | None] | None:
        """:meth:`authorize_event` for the ingestion of a batch, or None for a privileged
        caller, who may send any event (nothing to check per event)."""
        return None if self.is_privileged else self.authorize_event

    def authorize_event(self, ev: EventRecord) -> tuple[str, str] | None:
        """(field, reason) when the caller may not send this event: users send only their own
        events, anonymous callers only anonymous ones; admin/service tokens send anyone's.

        An ``identify`` claims its anonymous id, so it needs evidence that the id is the
        caller's: the request's own ``X-Anonymous-Id`` equals it (the same client session
        that browsed anonymously now signs in), or an admin/service caller (a server-side
        identify). Whatever the evidence, an id linked to another user is never re-linked
        (the store refuses it, see ``profiles.ingest``)."""
        if self.is_privileged:
            return None
        if not self.can_write:
            return "-", "sending events needs write access; the read scope can only read"
        if ev.user_id is not None and ev.user_id != self.user_id:
            return "userId", "you can only send events for your own user id"
        if ev.user_id is None and self.user_id is None and ev.anonymous_id != self.anonymous_id:
            return "anonymousId", "anonymous events must use the caller's X-Anonymous-Id"
        if ev.type == "identify" and ev.anonymous_id != self.anonymous_id:
            return "anonymousId", IDENTIFY_EVIDENCE
        return None

    @property
    def profile_key(self) -> str | None:
        if self.user_id:
            return self.user_id
        if self.anonymous_id:
            return anonymous_key(self.anonymous_id)
        return None


@dataclass
class Services:
    """Long-lived objects the app owns (built by ``gateway/wiring.py``, closed by the lifespan).

    ``segment_of`` is the one segment lookup of the read path (profile key -> segment id; the
    live segment model's by default). ``item_source`` / ``traits_source`` are the upstream
    record sources the request loaders ask before the local store (None: local store only).
    ``profile_cache`` is the edge layer's cache of profile states (None: read the store).
    """

    store: Store
    ingest: IngestionService
    trending: TrendingModel
    profile_config: ProfileConfig
    catalog: CatalogLookup
    content: ContentService
    recommender: Recommender
    segments: SegmentService
    privacy: PrivacyService
    segment_of: Callable[[str], str | None]
    max_first: int = 100
    search_personal_weight: float = 0.3
    clock: Callable[[], float] = time.time
    item_source: RecordSource[ItemRecord] | None = None
    traits_source: RecordSource[dict[str, Any]] | None = None
    profile_cache: ObjectCache[str, ProfileState] | None = None
    # The serving conversion-propensity model (None until one is trained); swapped by assignment.
    conversion: ConversionModel | None = None
    # Flags and experiments (None: none configured; a script building Services by hand).
    experiments: ExperimentService | None = None

    def segment_and_name(self, profile_key: str) -> tuple[str | None, str | None]:
        """(segment id, segment name) of a profile, or (None, None) when no segment applies."""
        sid = self.segment_of(profile_key)
        return (sid, self.segments.name_of(sid)) if sid is not None else (None, None)

    def check_traits(self, user_id: str, traits: dict[str, Any]) -> None:
        """Raises :class:`FieldError` when merging ``traits`` into the user's would pass
        :data:`MAX_USER_TRAITS_BYTES` (a CRM import row's cap): a user's row stays bounded
        however many identify calls add traits."""
        self._merged(user_id, traits)

    def _merged(
        self, user_id: str, traits: dict[str, Any]
    ) -> tuple[UserRecord | None, dict[str, Any]]:
        current = self.store.get_user(user_id)
        merged = {**(dict(current.traits) if current else {}), **traits}
        json_document(merged, "traits", max_bytes=MAX_USER_TRAITS_BYTES)
        return current, merged

    def merge_traits(self, user_id: str, traits: dict[str, Any]) -> None:
        """Merge CRM-style traits into a user's record (creating the user if needed); the
        store hashes the configured PII traits. Raises :class:`FieldError` past the cap."""
        current, merged = self._merged(user_id, traits)
        self.store.upsert_users(
            [
                UserRecord(
                    user_id,
                    merged,
                    current.consent_personalization if current else True,
                    current.consent_tracking if current else True,
                    self.clock(),
                )
            ]
        )


class RecordSource(Protocol[T_co]):
    """An upstream service answering records by id (``upstream/service.py`` builds them).

    ``await fetch(ids)`` -> one entry per id, in order: the record; ``None`` when the upstream
    does not know the id (the local store answers instead); or an exception when it cannot
    answer now and has no usable cached answer (that field gets ``UPSTREAM_UNAVAILABLE``).
    ``Services.item_source`` answers ItemRecord, ``Services.traits_source`` traits dicts.
    """

    async def fetch(self, ids: list[str]) -> Sequence[T_co | BaseException | None]: ...


def _field_errors(values: Sequence[Any]) -> list[Any]:
    # The DataLoader fails exactly the keys whose value is an exception: only those fields
    # are null; the client sees the code, the log has the upstream's own message.
    out = []
    for v in values:
        if isinstance(v, BaseException):
            log.warning("upstream field unavailable: %s", v)
            v = UpstreamUnavailable("an upstream service is unavailable; try again later")
        out.append(v)
    return out


@dataclass(init=False)
class TailorContext:
    """One request's context: the services, who is asking, the request, its loaders.

    Who is asking is reachable only through the ``viewer`` property, which tells the request's
    cache-hint recorder (``cache_control``, installed by the edge layer) that the answer now
    depends on the caller: PRIVATE, never shared (``resolvers/cache_control.py``). A resolver
    that needs only the caller's segment reads ``cache_control.viewer_segment(info)`` instead.
    """

    services: Services
    _viewer: Viewer
    request: Any
    cache_control: CacheControlRecorder | None
    items: DataLoader[str, ItemRecord | None] = field(init=False)
    traits: DataLoader[str, dict[str, Any] | None] = field(init=False)

    def __init__(self, services: Services, viewer: Viewer, request: Any = None) -> None:
        self.services = services
        self._viewer = viewer
        self.request = request
        self.cache_control = None
        # profile key -> its experiments.Assignment for this request (resolvers/experiments.py)
        self.assignments: dict[str, Any] = {}
        self._make_loaders()

    @property
    def viewer(self) -> Viewer:
        """Who is asking; reading it makes the whole answer PRIVATE."""
        if self.cache_control is not None:
            self.cache_control.note_viewer_read()
        return self._viewer

    def _make_loaders(self) -> None:
        store = self.services.store
        item_source = self.services.item_source
        traits_source = self.services.traits_source

        async def load_items(ids: list[str]) -> list[Any]:
            if item_source is None:
                found = store.get_items(ids)
                return [found.get(i) for i in ids]
            got = list(await item_source.fetch(ids))
            unknown = [i for i, v in zip(ids, got, strict=True) if v is None]
            local = store.get_items(unknown) if unknown else {}
            return _field_errors(
                [local.get(i) if v is None else v for i, v in zip(ids, got, strict=True)]
            )

        async def load_traits(ids: list[str]) -> list[Any]:
            got: list[Any] = [None] * len(ids)
            if traits_source is not None:
                got = list(await traits_source.fetch(ids))
            out: list[Any] = []
            for i, v in zip(ids, got, strict=True):
                if v is None:  # not configured, or unknown upstream: the local record
                    rec = store.get_user(i)
                    v = dict(rec.traits) if rec else None
                out.append(v)
            return _field_errors(out)

        self.items = DataLoader(load_fn=load_items)
        self.traits = DataLoader(load_fn=load_traits)

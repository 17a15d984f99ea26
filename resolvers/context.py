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
from profiles.ingest import IngestionService
from profiles.privacy import PrivacyService
from profiles.state import ProfileState
from profiles.types import ProfileConfig
from recommend.content import ContentService
from recommend.conversion import ConversionModel
from recommend.engine import Recommender
from recommend.trending import TrendingModel
from resolvers.errors import UpstreamUnavailable
from segments.service import SegmentService
from storage.sqlite import SQLiteStore
from storage.types import EventRecord, ItemRecord, UserRecord, anonymous_key

ADMIN_SCOPES = frozenset({"admin", "service"})
T_co = TypeVar("T_co", covariant=True)
log = logging.getLogger("tailor.resolvers")


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is asking. ``user_id`` comes from a verified token, ``anonymous_id`` from a header."""

    user_id: str | None = None
    anonymous_id: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def is_privileged(self) -> bool:
        return bool(self.scopes & ADMIN_SCOPES)

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

    def authorize_event(self, ev: EventRecord) -> tuple[str, str] | None:
        """(field, reason) when the caller may not send this event: users send only their own
        events, anonymous callers only anonymous ones; admin/service tokens send anyone's."""
        if self.is_privileged:
            return None
        if ev.user_id is not None and ev.user_id != self.user_id:
            return "userId", "you can only send events for your own user id"
        if ev.user_id is None and self.user_id is None and ev.anonymous_id != self.anonymous_id:
            return "anonymousId", "anonymous events must use the caller's X-Anonymous-Id"
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

    store: SQLiteStore
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

    def segment_and_name(self, profile_key: str) -> tuple[str | None, str | None]:
        """(segment id, segment name) of a profile, or (None, None) when no segment applies."""
        sid = self.segment_of(profile_key)
        return (sid, self.segments.name_of(sid)) if sid is not None else (None, None)

    def merge_traits(self, user_id: str, traits: dict[str, Any]) -> None:
        """Merge CRM-style traits into a user's record (creating the user if needed)."""
        current = self.store.get_user(user_id)
        merged = {**(dict(current.traits) if current else {}), **traits}
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


@dataclass
class TailorContext:
    services: Services
    viewer: Viewer
    request: Any = None
    items: DataLoader[str, ItemRecord | None] = field(init=False)
    traits: DataLoader[str, dict[str, Any] | None] = field(init=False)

    def __post_init__(self) -> None:
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

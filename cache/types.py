"""Contracts of the ``cache`` package: scopes, policies, hints, entries, states, errors.

Exception hierarchy (all raised by this package derive from ``CacheError``)::

    CacheError
    └── UpstreamError      compute produced an error *response*; carries it (``.entry``)

Time units: every ``max_age`` / window is an ``int`` number of **seconds**. Every timestamp
(``stored_at``) is a reading of the owning cache's injected ``timer`` — ``time.monotonic`` by
default, so it is only comparable within one process; never put it on the wire as a date.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class CacheError(Exception):
    """Base class of every exception raised by ``cache/``."""


class UpstreamError(CacheError):
    """``compute`` returned an error response (``entry.is_error``) instead of raising.

    Only ever passed to ``on_error`` hooks (so they see one exception type for both kinds of
    failure); ``get_or_compute`` returns the error entry itself when no stale copy can be served.
    """

    def __init__(self, entry: CachedResponse) -> None:
        super().__init__(f"upstream answered with status {entry.status}")
        self.entry = entry


class CacheScope(enum.IntEnum):
    """Who may share a cached answer, ordered by restrictiveness (``max`` = most restrictive).

    PUBLIC: everyone. SEGMENT: everyone in the same segment (key carries ``seg:<id>``).
    PRIVATE: one user only (key carries ``user:<id>``); shared caches must not store it.
    """

    PUBLIC = 0
    SEGMENT = 1
    PRIVATE = 2


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How long and for whom an answer may be reused.

    ``max_age``: seconds the answer is fresh; ``0`` means not cacheable.
    ``stale_while_revalidate``: seconds *after* ``max_age`` during which a stale copy may be
    served while one background refresh runs. ``stale_if_error``: seconds after ``max_age``
    during which a stale copy may be served when refreshing fails. Both as in RFC 5861.
    """

    max_age: int
    scope: CacheScope = CacheScope.PUBLIC
    stale_while_revalidate: int = 0
    stale_if_error: int = 0

    def __post_init__(self) -> None:
        if min(self.max_age, self.stale_while_revalidate, self.stale_if_error) < 0:
            raise ValueError(f"negative duration in {self!r}")

    @classmethod
    def uncacheable(cls) -> CachePolicy:
        """The policy that forbids any reuse (the identity of nothing: ``merge`` absorbs)."""
        return cls(max_age=0, scope=CacheScope.PRIVATE)

    @property
    def is_cacheable(self) -> bool:
        return self.max_age > 0

    @property
    def retention(self) -> int:
        """Seconds after storing during which the entry can still be served in some state."""
        if not self.is_cacheable:
            return 0
        return self.max_age + max(self.stale_while_revalidate, self.stale_if_error)

    def merge(self, other: CachePolicy) -> CachePolicy:
        """The policy satisfying both: shortest ages and windows, most restrictive scope."""
        return CachePolicy(
            max_age=min(self.max_age, other.max_age),
            scope=max(self.scope, other.scope),
            stale_while_revalidate=min(self.stale_while_revalidate, other.stale_while_revalidate),
            stale_if_error=min(self.stale_if_error, other.stale_if_error),
        )


@dataclass(frozen=True, slots=True)
class CacheHint:
    """An optional ``@cacheControl``-style annotation on a GraphQL type or field.

    ``None`` means "not specified here" (a field hint overrides its type's hint attribute by
    attribute, as in Apollo Server). ``inherit_max_age=True`` means "take the parent field's
    max_age"; a ``max_age`` given alongside it is ignored (Apollo does the same).
    ``swr``/``sie``: stale-while-revalidate / stale-if-error windows in seconds.
    """

    max_age: int | None = None
    scope: CacheScope | None = None
    inherit_max_age: bool = False
    swr: int | None = None
    sie: int | None = None


PathElement = str | int


@dataclass(frozen=True, slots=True)
class FieldFact:
    """One resolved field of an executed operation, as the GraphQL layer saw it.

    ``path``: response path, e.g. ``("me", "recommendations", 0, "title")``.
    ``is_root``: a field of the operation's root type (``len(path) == 1``).
    ``returns_composite``: the named return type is an object/interface/union (possibly inside
    lists / non-null). ``field_hint``: the hint on the field definition (or set dynamically by
    its resolver). ``type_hint``: the hint on the named return type, only for composites.
    """

    path: Sequence[PathElement]
    is_root: bool
    returns_composite: bool
    field_hint: CacheHint | None = None
    type_hint: CacheHint | None = None


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """One stored HTTP answer of the edge cache.

    ``body``: the exact bytes sent. ``headers``: lower-case name -> value, without hop-by-hop
    or per-request headers (Date, Age, X-Cache are added on the way out). ``stored_at``:
    timer reading when the answer was produced. ``etag``: strong validator, quoted
    (``'"<hex>"'``), see ``cache.response.etag_for``.
    """

    body: bytes
    headers: Mapping[str, str]
    status: int
    policy: CachePolicy
    tags: frozenset[str] = frozenset()
    stored_at: float = 0.0
    etag: str = ""

    @property
    def is_error(self) -> bool:
        """A server-side failure: triggers stale-if-error and is never stored."""
        return self.status >= 500

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the entry (what the byte bound counts)."""
        header_bytes = sum(len(k) + len(v) for k, v in self.headers.items())
        tag_bytes = sum(len(t) + _TAG_OVERHEAD for t in self.tags)
        return len(self.body) + header_bytes + tag_bytes + len(self.etag) + _ENTRY_OVERHEAD


# Fixed per-entry cost so that many tiny entries still count: the dataclass, its headers dict
# and tag set, the key, the TTL/LRU bookkeeping and the tag index (measured with tracemalloc:
# ~1.2 kB for a small answer), and per tag its string and index slots.
_ENTRY_OVERHEAD = 1152
_TAG_OVERHEAD = 96


class LookupState(enum.Enum):
    """What ``ResponseCache.lookup`` found for a key at the current time."""

    FRESH = "fresh"  # age < max_age
    STALE = "stale"  # inside stale-while-revalidate: serve, refresh in the background
    STALE_IF_ERROR_ONLY = "stale-if-error-only"  # only servable if a refresh fails
    MISS = "miss"  # nothing servable


class XCacheState(enum.Enum):
    """What ``get_or_compute`` did; the value is meant for an ``X-Cache`` header."""

    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"


@dataclass(slots=True)
class CacheStats:
    """Counters of a ``BoundedTTLCache`` (monotonic except ``bytes``/``entries``)."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0  # removed to respect the byte bound
    expirations: int = 0  # removed because their TTL ran out
    rejected: int = 0  # not stored: bigger than the whole bound, or TTL <= 0
    bytes: int = 0
    entries: int = 0


@dataclass(slots=True)
class ResponseStats:
    """Counters of ``ResponseCache.get_or_compute`` outcomes."""

    hits: int = 0
    misses: int = 0  # compute ran (or was joined) because nothing usable was stored
    stale: int = 0  # served inside stale-while-revalidate
    stale_if_error: int = 0  # served stale because compute failed
    coalesced: int = 0  # joined another request's in-flight compute
    revalidations: int = 0  # background refreshes started
    not_stored: int = 0  # compute answers passed through without storing
    shared_hits: int = 0  # local misses answered from the shared level (Redis)


class SharedLevel(Protocol):
    """A cache level shared by every instance of a fleet, under each in-process
    ``ResponseCache`` (``cache.redis_tier.RedisTier``). Every method answers "nothing" (a miss,
    no lease, ``False``, ``0``) rather than raising when the level is unavailable, so the
    in-process tier keeps serving. Times: ``ttl_s`` seconds; ``since_ms`` the level's own clock
    in milliseconds as ``lookup`` returned it (0: unknown)."""

    async def lookup(self, key: str) -> tuple[CachedResponse | None, int]:
        """The stored answer for ``key`` (or None) and the level's clock (ms)."""
        ...

    async def put(
        self, key: str, entry: CachedResponse, scope: CacheScope, ttl_s: float, since_ms: int
    ) -> bool:
        """Store ``entry`` for ``ttl_s`` unless it is PRIVATE or wider than ``scope``, or a
        purge reached the level after ``since_ms``; whether it was stored."""
        ...

    async def acquire(self, key: str) -> Any:
        """A single-flight lease on ``key`` across instances; None if someone holds it."""
        ...

    async def release(self, lease: Any) -> None:
        """Give back a lease ``acquire`` returned."""
        ...

    async def wait_for(self, key: str) -> CachedResponse | None:
        """The lease holder's answer for ``key`` once stored (bounded wait); None otherwise."""
        ...

    async def purge(
        self, mode: str, names: Iterable[str] = (), note: Mapping[str, Any] | None = None
    ) -> int:
        """Drop entries (``mode`` ``tags``, ``keys`` or ``all``) and tell every instance."""
        ...

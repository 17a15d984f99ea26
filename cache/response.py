"""``ResponseCache``: the edge cache's store of whole HTTP answers.

Freshness of an entry of age ``a`` (seconds since ``stored_at``) with policy ``p``:

    a < max_age                                  FRESH                -> serve (HIT)
    a < max_age + stale_while_revalidate         STALE                -> serve, refresh once
    a < max_age + stale_if_error                 STALE_IF_ERROR_ONLY  -> serve only on failure
    otherwise                                    MISS                 -> compute

Entries stay in the byte-bounded store for ``p.retention`` seconds (the last servable moment);
tags are indexed for purges. ``get_or_compute`` adds single-flight on misses, one background
revalidation per key while STALE, and stale-if-error.

What ``compute`` must return (the contract the edge middleware implements):

* a ``CachedResponse`` with a cacheable policy, a status in ``CACHEABLE_STATUSES`` and a scope
  no wider than the key's ``scope`` -> stored, returned (``MISS``) and shared with concurrent
  callers of the same key;
* a ``CachedResponse`` that is not storable (``policy.max_age == 0``, e.g.
  ``CachePolicy.uncacheable()``; a status outside ``CACHEABLE_STATUSES``; or a scope more
  restrictive than the key's) -> returned to this caller only, never stored nor shared: every
  concurrent caller that joined runs its *own* compute. Any older entry for the key is dropped.
* an error ``CachedResponse`` (``status >= 500``) -> like a raised exception for
  stale-if-error; when no stale copy is servable it is returned as is (``MISS``, not stored);
* ``None`` -> "I answered this request myself, outside the cache" (e.g. a streamed response):
  nothing is stored or shared and ``get_or_compute`` returns ``(None, MISS)``;
* raising ``Exception`` -> stale-if-error if possible, otherwise re-raised to the caller (and to
  the callers that joined this flight).

``compute`` may run in a background task after the request that supplied it has finished
(revalidation), so it must not use request-scoped resources such as an ASGI ``receive``.

A ``shared`` level (``cache.types.SharedLevel``, e.g. Redis) sits under this one: a local miss
of a key that is not PRIVATE reads it before computing (a servable entry is adopted with its
original ``stored_at``, so ages and SWR windows stay those of the first store); a miss there
takes a lease so that one instance of the fleet computes while the others wait (bounded) for
its answer; storable answers are written to both levels, PRIVATE ones only here. Purges drop
the shared level's entries and are announced to every instance (``fleet=False`` applies one
received from another instance locally only). A revalidation only adopts a FRESH shared copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cache.singleflight import SingleFlight
from cache.tags import Fill, PurgeFence, TagIndex
from cache.ttl import BoundedTTLCache, RemovalCause
from cache.types import (
    CachedResponse,
    CachePolicy,
    CacheScope,
    CacheStats,
    LookupState,
    ResponseStats,
    SharedLevel,
    UpstreamError,
    XCacheState,
)

logger = logging.getLogger(__name__)

Compute = Callable[[], Awaitable[CachedResponse | None]]
# Called with (key, failure) whenever a failure is swallowed: a stale entry was served in
# place of it, or a background revalidation failed. Raised compute errors reach it as is,
# error responses as ``UpstreamError``.
ErrorHook = Callable[[str, BaseException], None]

# Heuristically cacheable statuses of RFC 9110 §15.1, without 501 (an error).
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414})

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def etag_for(body: bytes) -> str:
    """Strong ETag of a body: quoted first 32 hex chars of its sha256."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@dataclass(frozen=True, slots=True)
class _Outcome:
    entry: CachedResponse | None
    state: XCacheState
    shareable: bool  # may be handed to callers that joined the flight
    revalidate: bool = False  # a STALE copy adopted from the shared level: refresh it


class ResponseCache:
    """Byte-bounded, tag-purgeable store of ``CachedResponse`` with SWR and stale-if-error.

    ``timer``: seconds, default ``time.monotonic`` (entries' ``stored_at`` use it too).
    One instance per event loop; not thread-safe. ``shared``: the fleet's level under this one
    (see the module docstring); its entries carry the producer's ``stored_at``, so the timer
    must then be the wall clock of every instance (the app's clock).
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        timer: Callable[[], float] = time.monotonic,
        shared: SharedLevel | None = None,
    ) -> None:
        self._timer = timer
        self._shared = shared
        self._shared_purges: set[asyncio.Task[int]] = set()
        self._tags: TagIndex[str] = TagIndex()
        self._store: BoundedTTLCache[str, CachedResponse] = BoundedTTLCache(
            max_bytes, sizeof=lambda e: e.nbytes, timer=timer, on_remove=self._removed
        )
        self._fence: PurgeFence[str] = PurgeFence()
        self._flights: SingleFlight[str] = SingleFlight()
        self._revalidations: dict[str, asyncio.Task[None]] = {}
        self.stats = ResponseStats()

    # -- low level -------------------------------------------------------------------------

    def make_entry(
        self,
        body: bytes,
        *,
        policy: CachePolicy,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        tags: Iterable[str] = (),
    ) -> CachedResponse:
        """An entry stamped with this cache's clock, header names lower-cased, ETag set.

        A body that may be stored is copied to an exact-size ``bytes``: encoders over-allocate
        (orjson keeps a 24-byte answer in a 4 kB buffer, a 100 kB one in 1 MB), and the byte
        bound counts ``len(body)``."""
        if policy.is_cacheable:
            body = bytes(memoryview(body))
        return CachedResponse(
            body=body,
            headers={k.lower(): v for k, v in (headers or {}).items()},
            status=status,
            policy=policy,
            tags=frozenset(tags),
            stored_at=self._timer(),
            etag=etag_for(body),
        )

    def age(self, entry: CachedResponse) -> int:
        """Whole seconds since ``entry`` was produced (for the ``Age`` header)."""
        return max(0, int(self._timer() - entry.stored_at))

    def state_of(self, entry: CachedResponse) -> LookupState:
        """Where ``entry`` stands now (see the module docstring's table)."""
        policy = entry.policy
        age = self._timer() - entry.stored_at
        if not policy.is_cacheable:
            return LookupState.MISS
        if age < policy.max_age:
            return LookupState.FRESH
        if age < policy.max_age + policy.stale_while_revalidate:
            return LookupState.STALE
        if age < policy.max_age + policy.stale_if_error:
            return LookupState.STALE_IF_ERROR_ONLY
        return LookupState.MISS

    def lookup(self, key: str) -> tuple[CachedResponse | None, LookupState]:
        """The stored entry and its state; ``(None, MISS)`` when nothing is servable."""
        entry = self._store.get(key)
        if entry is None:
            return None, LookupState.MISS
        state = self.state_of(entry)
        if state is LookupState.MISS:
            self._store.delete(key)
            return None, state
        return entry, state

    def is_storable(self, entry: CachedResponse, scope: CacheScope = CacheScope.PUBLIC) -> bool:
        """Whether ``entry`` may be stored under a key built for ``scope``."""
        return (
            entry.policy.is_cacheable
            and entry.status in CACHEABLE_STATUSES
            and entry.policy.scope <= scope
        )

    def store(self, key: str, entry: CachedResponse) -> bool:
        """Store ``entry`` until its last servable moment; ``False`` if not stored.

        Not stored: uncacheable policy or status, already past every window, or bigger than
        the whole byte budget. The key's scope is the caller's business here
        (``get_or_compute`` checks it).
        """
        if not (entry.policy.is_cacheable and entry.status in CACHEABLE_STATUSES):
            return False
        ttl = entry.policy.retention - (self._timer() - entry.stored_at)
        if not self._store.set(key, entry, ttl):
            return False
        # After ``set``: an eviction of this very key inside ``set`` discards its old tags.
        self._tags.add(key, entry.tags)
        return True

    def purge_tags(
        self, tags: Iterable[str], *, fleet: bool = True, note: Mapping[str, Any] | None = None
    ) -> int:
        """Drop every entry carrying one of ``tags``; returns how many were dropped here.

        Loads in flight whose answers carry a purged tag will not store them. With a shared
        level and ``fleet``, its entries go too and every instance is told (with ``note``).
        """
        tag_list = list(tags)
        self._fence.purged_tags(tag_list)
        if fleet:
            self._purge_shared("tags", tag_list, note)
        return sum(self._store.delete(key) for key in self._tags.invalidate(tag_list))

    def purge_keys(self, keys: Iterable[str], *, fleet: bool = True) -> int:
        """Drop these keys (and fence their loads in flight); returns how many were dropped."""
        key_list = list(keys)
        self._fence.purged_keys(key_list)
        if fleet:
            self._purge_shared("keys", key_list, None)
        return sum(self._store.delete(key) for key in key_list)

    def purge_all(self, *, fleet: bool = True, note: Mapping[str, Any] | None = None) -> int:
        """Drop everything (and fence every load in flight); returns how many were dropped."""
        self._fence.purged_all()
        if fleet:
            self._purge_shared("all", [], note)
        count = len(self._store)
        self._store.clear()
        return count

    def _purge_shared(self, mode: str, names: list[str], note: Mapping[str, Any] | None) -> None:
        if self._shared is None or (mode != "all" and not names):
            return
        task = asyncio.ensure_future(self._shared.purge(mode, names, note))
        self._shared_purges.add(task)
        task.add_done_callback(self._shared_purges.discard)

    async def flush_shared(self) -> None:
        """Wait until the purges sent to the shared level so far have reached it (and the
        fleet); later ones are not waited for, so steady purging cannot starve a reader."""
        if self._shared_purges:
            await asyncio.gather(*list(self._shared_purges), return_exceptions=True)

    @property
    def store_stats(self) -> CacheStats:
        """Byte/entry counts and evictions of the underlying store."""
        return self._store.stats

    @property
    def tagged_keys(self) -> int:
        """Keys in the tag index (never more than the entries held: no leak on eviction)."""
        return len(self._tags)

    def __len__(self) -> int:
        return len(self._store)

    def _removed(self, key: str, _entry: CachedResponse, _cause: RemovalCause) -> None:
        self._tags.discard(key)

    # -- high level ------------------------------------------------------------------------

    async def get_or_compute(
        self,
        key: str,
        compute: Compute,
        *,
        scope: CacheScope = CacheScope.PUBLIC,
        on_error: ErrorHook | None = None,
    ) -> tuple[CachedResponse | None, XCacheState]:
        """Serve ``key`` from the cache or through ``compute`` (contract: module docstring).

        ``scope``: what the key was built for (``cache.keys.scope_of(scope_key)``); answers
        more restrictive than that are never stored or shared. Returns the answer and
        ``HIT`` (fresh), ``STALE`` (stale copy served: SWR or stale-if-error) or ``MISS``.
        """
        entry, state = self.lookup(key)
        if state is LookupState.FRESH:
            self.stats.hits += 1
            return entry, XCacheState.HIT
        if state is LookupState.STALE:
            self.stats.stale += 1
            self._start_revalidation(key, compute, scope, on_error)
            return entry, XCacheState.STALE
        self.stats.misses += 1
        outcome, joined = await self._flights.do_shared(
            key, lambda: self._fill(key, compute, scope, on_error)
        )
        if joined:
            if outcome.shareable:
                self.stats.coalesced += 1
                return outcome.entry, outcome.state
            # The leader's answer was for its caller only: compute our own, unshared.
            outcome = await self._fill(key, compute, scope, on_error)
        if outcome.revalidate:
            self._start_revalidation(key, compute, scope, on_error)
        return outcome.entry, outcome.state

    async def _fill(
        self,
        key: str,
        compute: Compute,
        scope: CacheScope,
        on_error: ErrorHook | None,
        *,
        revalidating: bool = False,
    ) -> _Outcome:
        fill = self._fence.begin(key)
        shared = self._shared if scope is not CacheScope.PRIVATE else None
        lease: Any = None
        since_ms = 0
        try:
            if shared is not None:
                found, since_ms, lease = await self._from_shared(
                    shared, key, scope, fill, accept_stale=not revalidating
                )
                if found is not None:
                    return found
            try:
                entry = await compute()
            except Exception as exc:
                fallback = self._serve_stale(key, exc, on_error)
                if fallback is None:
                    raise
                return fallback
            if entry is not None and entry.is_error:
                fallback = self._serve_stale(key, UpstreamError(entry), on_error)
                return fallback or _Outcome(entry, XCacheState.MISS, shareable=False)
            if entry is not None and self.is_storable(entry, scope):
                if fill.may_store(entry.tags):
                    self.store(key, entry)
                    if shared is not None:
                        ttl = entry.policy.retention - (self._timer() - entry.stored_at)
                        await shared.put(key, entry, scope, ttl, since_ms)
                else:
                    self.stats.not_stored += 1  # purged while computing: serve, don't keep
                return _Outcome(entry, XCacheState.MISS, shareable=True)
            # The current answer must not be reused; neither may an older stored one.
            self._store.delete(key)
            self.stats.not_stored += 1
            return _Outcome(entry, XCacheState.MISS, shareable=False)
        finally:
            if lease is not None and shared is not None:
                await shared.release(lease)
            self._fence.end(fill)

    async def _from_shared(
        self,
        shared: SharedLevel,
        key: str,
        scope: CacheScope,
        fill: Fill[str],
        *,
        accept_stale: bool,
    ) -> tuple[_Outcome | None, int, Any]:
        """(an answer adopted from the shared level, its clock, a lease held on a miss)."""
        if self._shared_purges:  # our own purges reach the shared level before we read it
            await self.flush_shared()
        entry, since_ms = await shared.lookup(key)
        found = self._adopt(key, entry, scope, fill, accept_stale)
        if found is not None:
            return found, since_ms, None
        lease = await shared.acquire(key)
        if lease is None:  # another instance computes it: take its answer, or compute
            found = self._adopt(key, await shared.wait_for(key), scope, fill, accept_stale)
        return found, since_ms, lease

    def _adopt(
        self,
        key: str,
        entry: CachedResponse | None,
        scope: CacheScope,
        fill: Fill[str],
        accept_stale: bool,
    ) -> _Outcome | None:
        """Keep a shared entry here (any servable state: a stale-if-error copy helps a
        failing compute too); the outcome when it answers this miss."""
        if (
            entry is None
            or not self.is_storable(entry, scope)
            or entry.policy.scope is CacheScope.PRIVATE
            or not fill.may_store(entry.tags)  # purged while it was read
        ):
            return None
        state = self.state_of(entry)
        if state is LookupState.MISS:
            return None
        self.store(key, entry)
        if state is LookupState.FRESH:
            self.stats.shared_hits += 1
            return _Outcome(entry, XCacheState.HIT, shareable=True)
        if state is LookupState.STALE and accept_stale:
            self.stats.shared_hits += 1
            return _Outcome(entry, XCacheState.STALE, shareable=True, revalidate=True)
        return None

    def _serve_stale(
        self, key: str, failure: BaseException, on_error: ErrorHook | None
    ) -> _Outcome | None:
        """The stored entry if it may stand in for a failed compute, else ``None``."""
        entry, state = self.lookup(key)  # re-read: time passed while computing
        if entry is None:
            return None
        _report(on_error, key, failure)
        if state is LookupState.FRESH:  # someone stored a fresh answer meanwhile
            return _Outcome(entry, XCacheState.HIT, shareable=True)
        self.stats.stale_if_error += 1
        return _Outcome(entry, XCacheState.STALE, shareable=True)

    def _start_revalidation(
        self, key: str, compute: Compute, scope: CacheScope, on_error: ErrorHook | None
    ) -> None:
        if key in self._revalidations:
            return
        self.stats.revalidations += 1
        task = asyncio.ensure_future(self._revalidate(key, compute, scope, on_error))
        self._revalidations[key] = task
        task.add_done_callback(lambda _t: self._revalidations.pop(key, None))

    async def _revalidate(
        self, key: str, compute: Compute, scope: CacheScope, on_error: ErrorHook | None
    ) -> None:
        try:
            await self._flights.do(
                key, lambda: self._fill(key, compute, scope, on_error, revalidating=True)
            )
        except Exception as exc:
            # Nothing left to serve in its place (the stale copy expired or was purged).
            _report(on_error, key, exc)

    def revalidating(self, key: str) -> bool:
        """Whether a background refresh of ``key`` is running."""
        return key in self._revalidations

    async def aclose(self) -> None:
        """Cancel background revalidations and flights (call from the app's lifespan)."""
        tasks = list(self._revalidations.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._flights.aclose()
        await self.flush_shared()


def _report(on_error: ErrorHook | None, key: str, failure: BaseException) -> None:
    if on_error is None:
        logger.warning("cache %s: serving around failure: %r", key, failure)
        return
    try:
        on_error(key, failure)
    except Exception:  # a broken hook must not turn a served stale answer into a failure
        logger.exception("cache on_error hook failed for %s", key)

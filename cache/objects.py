"""``ObjectCache``: TTL, memory-bounded cache of Python objects with tags and single-flight.

Made for the profile cache: ``get_or_load("user:42", load, tags=["user:42"])`` on reads and
``invalidate_tags(["user:42"])`` on every event of that user. Sizes are estimates
(``approx_sizeof``) -- good enough to bound memory, not an exact accounting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Generic, TypeVar

from cache.singleflight import SingleFlight
from cache.tags import PurgeFence, TagIndex
from cache.ttl import BoundedTTLCache, RemovalCause
from cache.types import CacheStats

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_BYTES = 32 * 1024 * 1024


def approx_sizeof(obj: object, *, max_depth: int = 4) -> int:
    """Rough bytes held by ``obj``: ``sys.getsizeof`` summed over containers/dataclasses.

    Shared and cyclic references are counted once; recursion stops at ``max_depth`` (deeper
    objects count shallowly). numpy arrays report their buffer through ``getsizeof``.
    """
    seen: set[int] = set()

    def size(o: object, depth: int) -> int:
        if id(o) in seen:
            return 0
        seen.add(id(o))
        total = sys.getsizeof(o)
        if depth >= max_depth:
            return total
        if isinstance(o, Mapping):
            for k, v in o.items():
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(o, list | tuple | set | frozenset):
            for item in o:
                total += size(item, depth + 1)
        elif is_dataclass(o) and not isinstance(o, type):
            for f in fields(o):
                total += size(getattr(o, f.name), depth + 1)
        elif hasattr(o, "__dict__"):
            total += size(vars(o), depth + 1)
        return total

    return size(obj, 0)


class ObjectCache(Generic[K, V]):
    """At most ``max_bytes`` (estimated) of objects, each kept ``ttl`` seconds.

    ``default_ttl``: seconds, used when ``set``/``get_or_load`` get no ``ttl``.
    ``sizeof``: bytes estimate of a value (default ``approx_sizeof``).
    ``timer``: seconds, default ``time.monotonic``. One instance per event loop.
    Cached objects are shared, not copied: treat them as immutable. ``None`` cannot be
    cached (``get`` returns ``None`` for a miss): wrap absent profiles in a sentinel value.
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        default_ttl: float = 60.0,
        sizeof: Callable[[V], int] = approx_sizeof,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default_ttl = default_ttl
        self._tags: TagIndex[K] = TagIndex()
        self._data: BoundedTTLCache[K, V] = BoundedTTLCache(
            max_bytes, sizeof=sizeof, timer=timer, on_remove=self._removed
        )
        self._fence: PurgeFence[K] = PurgeFence()
        self._flights: SingleFlight[K] = SingleFlight()

    def get(self, key: K) -> V | None:
        return self._data.get(key)

    def set(self, key: K, value: V, *, ttl: float | None = None, tags: Iterable[str] = ()) -> bool:
        """Store ``value``; ``False`` if rejected (larger than the bound, or ``ttl <= 0``)."""
        if not self._data.set(key, value, self.default_ttl if ttl is None else ttl):
            return False
        self._tags.add(key, tags)
        return True

    async def get_or_load(
        self,
        key: K,
        load: Callable[[], Awaitable[V]],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> V:
        """The cached value, or ``await load()`` once for all concurrent callers of ``key``.

        A load's exception reaches every waiting caller and nothing is cached. If the key or
        one of ``tags`` is invalidated while the load runs, its (possibly outdated) result
        is returned but not cached.
        """
        value = self._data.get(key)
        if value is not None:
            return value
        tag_list = list(tags)

        async def fill() -> V:
            guard = self._fence.begin(key)
            try:
                loaded = await load()
                if guard.may_store(tag_list):
                    self.set(key, loaded, ttl=ttl, tags=tag_list)
                return loaded
            finally:
                self._fence.end(guard)

        return await self._flights.do(key, fill)

    def delete(self, key: K) -> bool:
        self._fence.purged_keys([key])
        return self._data.delete(key)

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Drop every entry carrying one of ``tags`` (and fence loads in flight)."""
        tag_list = list(tags)
        self._fence.purged_tags(tag_list)
        return sum(self._data.delete(key) for key in self._tags.invalidate(tag_list))

    def clear(self) -> None:
        self._fence.purged_all()
        self._data.clear()

    @property
    def stats(self) -> CacheStats:
        return self._data.stats

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def _removed(self, key: K, _value: V, _cause: RemovalCause) -> None:
        self._tags.discard(key)

    async def aclose(self) -> None:
        await self._flights.aclose()

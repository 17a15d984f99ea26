"""``BoundedTTLCache``: a byte-bounded mapping whose entries each carry their own TTL.

Built on ``cachetools.TLRUCache``: ``maxsize`` is a byte budget (``getsizeof`` reports each
value's size), the time-to-use function reads the per-entry TTL, and under memory pressure the
least recently used entry goes first. Removals are reported through ``on_remove`` so that side
indexes (``TagIndex``) never keep keys the cache no longer holds.

Not thread-safe: use it from one event loop (the gateway's), like the rest of ``cache/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import cachetools

from cache.types import CacheStats

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

RemovalCause = Literal["evicted", "expired", "deleted"]
RemovalListener = Callable[[Any, Any, RemovalCause], None]


@dataclass(slots=True)
class _Slot(Generic[V]):
    value: V
    ttl: float
    size: int


class _ReportingTLRU(cachetools.TLRUCache):
    """TLRUCache that tells its owner about every entry it drops on its own."""

    def __init__(self, maxsize: int, timer: Callable[[], float], listener: RemovalListener):
        super().__init__(
            maxsize,
            ttu=lambda _key, slot, now: now + slot.ttl,
            timer=timer,
            getsizeof=lambda slot: slot.size,
        )
        self._listener = listener

    def expire(self, time: float | None = None) -> list[tuple[Any, Any]]:
        expired = list(super().expire(time))
        for key, slot in expired:
            self._listener(key, slot, "expired")
        return expired

    def popitem(self) -> tuple[Any, Any]:
        key, slot = super().popitem()
        self._listener(key, slot, "evicted")
        return key, slot


class BoundedTTLCache(Generic[K, V]):
    """At most ``max_bytes`` of values, each dropped ``ttl`` seconds after its ``set``.

    ``sizeof(value)`` -> bytes (default ``len``, for ``bytes`` values). ``timer`` returns
    seconds; default ``time.monotonic``. ``on_remove(key, value, cause)`` is called for every
    entry that leaves the cache other than by being overwritten, with cause ``"evicted"``
    (byte bound), ``"expired"`` (TTL) or ``"deleted"`` (``delete``/``pop``/``clear``).
    """

    def __init__(
        self,
        max_bytes: int,
        *,
        sizeof: Callable[[V], int] = len,  # type: ignore[assignment]
        timer: Callable[[], float] = time.monotonic,
        on_remove: Callable[[K, V, RemovalCause], None] | None = None,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self._sizeof = sizeof
        self._on_remove = on_remove
        self._stats = CacheStats()
        self._data = _ReportingTLRU(max_bytes, timer, self._removed)

    def _removed(self, key: Any, slot: Any, cause: RemovalCause) -> None:
        if cause == "evicted":
            self._stats.evictions += 1
        elif cause == "expired":
            self._stats.expirations += 1
        if self._on_remove is not None:
            self._on_remove(key, slot.value, cause)

    @property
    def max_bytes(self) -> int:
        return int(self._data.maxsize)

    @property
    def timer(self) -> Callable[[], float]:
        return self._data.timer

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters, with current ``bytes`` and ``entries``."""
        self._data.expire()
        s = self._stats
        return CacheStats(
            hits=s.hits,
            misses=s.misses,
            evictions=s.evictions,
            expirations=s.expirations,
            rejected=s.rejected,
            bytes=int(self._data.currsize),
            entries=len(self._data),
        )

    def get(self, key: K, default: V | None = None) -> V | None:
        """The live value for ``key`` (counts a hit or a miss)."""
        # Expiring here (O(1) when nothing is due) keeps side indexes prompt on read-mostly load.
        self._data.expire()
        slot = self._data.get(key)
        if slot is None:
            self._stats.misses += 1
            return default
        self._stats.hits += 1
        return slot.value

    def set(self, key: K, value: V, ttl: float) -> bool:
        """Store ``value`` for ``ttl`` seconds; ``False`` if it cannot be stored at all.

        A value bigger than the whole budget, or ``ttl <= 0``, is rejected (and any previous
        value for ``key`` is deleted, so a reader never sees the older answer).
        """
        size = self._sizeof(value)
        if ttl <= 0 or size > self.max_bytes:
            self._stats.rejected += 1
            self.delete(key)
            return False
        self._data[key] = _Slot(value, ttl, size)
        return True

    def delete(self, key: K) -> bool:
        """Remove ``key``; ``True`` if a live entry was removed."""
        try:
            slot = self._data[key]  # KeyError when absent or already expired
        except KeyError:
            self._data.expire()  # collect it if it was expired but still held
            return False
        try:
            del self._data[key]
        except KeyError:
            # TLRUCache removes it but raises if the TTL ran out between the two calls.
            self._removed(key, slot, "expired")
            return False
        self._removed(key, slot, "deleted")
        return True

    def clear(self) -> None:
        for key in list(self._data):
            self.delete(key)
        self._data.expire()

    def expire(self) -> None:
        """Collect expired entries now (otherwise done lazily on every get/set)."""
        self._data.expire()

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        self._data.expire()
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

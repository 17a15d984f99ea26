"""BoundedTTLCache: per-entry TTL and the byte bound, on an injected clock."""

from __future__ import annotations

from cache import BoundedTTLCache
from tests.cache.conftest import FakeClock


def make(
    clock: FakeClock, max_bytes: int = 100, log: list[tuple[str, str]] | None = None
) -> BoundedTTLCache[str, bytes]:
    def on_remove(key: str, _value: bytes, cause: str) -> None:
        if log is not None:
            log.append((key, cause))

    return BoundedTTLCache(max_bytes, timer=clock, on_remove=on_remove)


def test_entries_expire_on_their_own_ttl(clock: FakeClock) -> None:
    cache = make(clock)
    cache.set("short", b"s", ttl=5)
    cache.set("long", b"l", ttl=50)
    clock.advance(4.999)
    assert cache.get("short") == b"s"
    clock.advance(0.001)
    assert cache.get("short") is None
    assert "short" not in cache
    assert cache.get("long") == b"l"
    clock.advance(45)
    assert cache.get("long") is None
    assert len(cache) == 0


def test_byte_bound_evicts_least_recently_used(clock: FakeClock) -> None:
    log: list[tuple[str, str]] = []
    cache = make(clock, max_bytes=100, log=log)
    cache.set("a", b"x" * 40, ttl=60)
    cache.set("b", b"x" * 40, ttl=60)
    assert cache.get("a") is not None  # a is now more recent than b
    cache.set("c", b"x" * 40, ttl=60)
    assert "b" not in cache
    assert "a" in cache and "c" in cache
    assert log == [("b", "evicted")]
    stats = cache.stats
    assert stats.bytes == 80
    assert stats.entries == 2
    assert stats.evictions == 1


def test_bytes_never_exceed_the_bound(clock: FakeClock) -> None:
    cache = make(clock, max_bytes=1000)
    for i in range(500):
        cache.set(f"k{i}", b"x" * (i % 97 + 1), ttl=10 + i % 7)
        assert cache.stats.bytes <= 1000
        clock.advance(0.1)


def test_replacing_a_value_updates_its_size(clock: FakeClock) -> None:
    cache = make(clock)
    cache.set("a", b"x" * 10, ttl=60)
    cache.set("a", b"x" * 70, ttl=60)
    assert cache.stats.bytes == 70
    assert cache.get("a") == b"x" * 70


def test_too_large_or_non_positive_ttl_is_rejected_and_drops_the_old_value(
    clock: FakeClock,
) -> None:
    cache = make(clock, max_bytes=100)
    cache.set("a", b"old", ttl=60)
    assert not cache.set("a", b"x" * 101, ttl=60)
    assert cache.get("a") is None
    cache.set("b", b"old", ttl=60)
    assert not cache.set("b", b"new", ttl=0)
    assert "b" not in cache
    assert cache.stats.rejected == 2


def test_removal_callbacks_report_each_cause(clock: FakeClock) -> None:
    log: list[tuple[str, str]] = []
    cache = make(clock, log=log)
    cache.set("gone", b"1", ttl=1)
    cache.set("deleted", b"2", ttl=60)
    clock.advance(2)
    cache.expire()
    assert cache.delete("deleted")
    assert not cache.delete("deleted")
    assert log == [("gone", "expired"), ("deleted", "deleted")]


def test_hit_and_miss_counters(clock: FakeClock) -> None:
    cache = make(clock)
    cache.set("a", b"1", ttl=60)
    cache.get("a")
    cache.get("a")
    cache.get("zzz")
    stats = cache.stats
    assert (stats.hits, stats.misses) == (2, 1)


def test_custom_sizeof(clock: FakeClock) -> None:
    cache: BoundedTTLCache[str, list[int]] = BoundedTTLCache(
        10, sizeof=lambda v: len(v) * 4, timer=clock
    )
    cache.set("a", [1, 2], ttl=60)
    assert cache.stats.bytes == 8
    assert not cache.set("b", [1, 2, 3], ttl=60)

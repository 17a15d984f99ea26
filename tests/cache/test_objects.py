"""ObjectCache: the profile cache's TTL, memory bound, tag invalidation and single-flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from cache import ObjectCache, approx_sizeof
from tests.cache.conftest import FakeClock


@dataclass
class Profile:
    user_id: int
    scores: dict[str, float] = field(default_factory=dict)


def test_approx_sizeof_grows_with_content_and_handles_cycles() -> None:
    small = Profile(1, {"a": 1.0})
    big = Profile(2, {f"cat{i}": float(i) for i in range(1000)})
    assert approx_sizeof(big) > 10 * approx_sizeof(small)
    loop: list[object] = []
    loop.append(loop)
    assert approx_sizeof(loop) > 0


async def test_get_or_load_caches_until_ttl(clock: FakeClock) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(default_ttl=30, timer=clock)
    loads = 0

    async def load() -> Profile:
        nonlocal loads
        loads += 1
        return Profile(7)

    first = await cache.get_or_load(7, load, tags=["user:7"])
    clock.advance(29)
    assert await cache.get_or_load(7, load) is first
    clock.advance(1)
    assert await cache.get_or_load(7, load) is not first
    assert loads == 2


async def test_event_invalidates_the_users_profile(clock: FakeClock) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(timer=clock)
    cache.set(1, Profile(1), tags=["user:1"])
    cache.set(2, Profile(2), tags=["user:2"])
    assert cache.invalidate_tags(["user:1"]) == 1
    assert cache.get(1) is None
    assert cache.get(2) is not None


async def test_concurrent_loads_run_once_and_errors_are_not_cached(clock: FakeClock) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(timer=clock)
    gate = asyncio.Event()
    loads = 0

    async def load() -> Profile:
        nonlocal loads
        loads += 1
        await gate.wait()
        if loads == 1:
            raise LookupError("store unavailable")
        return Profile(3)

    waiters = [asyncio.create_task(cache.get_or_load(3, load)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert loads == 1
    assert all(isinstance(r, LookupError) for r in results)
    assert 3 not in cache
    assert (await cache.get_or_load(3, load)).user_id == 3
    assert loads == 2


async def test_invalidation_during_load_prevents_caching_the_outdated_value(
    clock: FakeClock,
) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(timer=clock)
    gate, started = asyncio.Event(), asyncio.Event()

    async def load() -> Profile:
        started.set()
        await gate.wait()
        return Profile(5)

    request = asyncio.create_task(cache.get_or_load(5, load, tags=["user:5"]))
    await started.wait()
    cache.invalidate_tags(["user:5"])  # an event arrived while the profile was being read
    gate.set()
    assert (await request).user_id == 5
    assert 5 not in cache


def test_memory_bound_evicts(clock: FakeClock) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(max_bytes=20_000, default_ttl=60, timer=clock)
    for i in range(200):
        cache.set(i, Profile(i, {f"c{j}": 1.0 for j in range(20)}), tags=[f"user:{i}"])
        assert cache.stats.bytes <= 20_000
    assert 0 < len(cache) < 200
    assert cache.stats.evictions == 200 - len(cache)
    assert cache.invalidate_tags([f"user:{i}" for i in range(100)]) == 0  # evicted already


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_rejected(clock: FakeClock, ttl: float) -> None:
    cache: ObjectCache[int, Profile] = ObjectCache(timer=clock)
    assert not cache.set(1, Profile(1), ttl=ttl)
    assert 1 not in cache

"""ResponseCache: freshness states, single-flight, SWR, stale-if-error, purges, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from cache import (
    CachedResponse,
    CachePolicy,
    CacheScope,
    LookupState,
    ResponseCache,
    UpstreamError,
    XCacheState,
    etag_for,
)
from tests.cache.conftest import FakeClock

HIT, MISS, STALE = XCacheState.HIT, XCacheState.MISS, XCacheState.STALE
POLICY = CachePolicy(60, stale_while_revalidate=30, stale_if_error=300)


class Origin:
    """A compute function that counts calls and can be told to block or fail."""

    def __init__(
        self,
        cache: ResponseCache,
        policy: CachePolicy = POLICY,
        tags: tuple[str, ...] = ("item:1",),
    ) -> None:
        self.cache = cache
        self.policy = policy
        self.tags = tags
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.status = 200

    async def __call__(self) -> CachedResponse:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.cache.make_entry(
            f"body {n}".encode(),
            policy=self.policy,
            status=self.status,
            tags=self.tags,
            headers={"Content-Type": "application/json"},
        )


@pytest.fixture
def cache(clock: FakeClock) -> ResponseCache:
    return ResponseCache(1_000_000, timer=clock)


async def settle() -> None:
    """Let background tasks run to completion (they never wait on the fake clock)."""
    for _ in range(10):
        await asyncio.sleep(0)


def test_lookup_walks_through_fresh_stale_stale_if_error_and_miss(
    cache: ResponseCache, clock: FakeClock
) -> None:
    entry = cache.make_entry(b"{}", policy=POLICY, tags=["item:1"])
    assert cache.store("k", entry)
    expected = [
        (0, LookupState.FRESH),
        (59.9, LookupState.FRESH),
        (60, LookupState.STALE),
        (89.9, LookupState.STALE),
        (90, LookupState.STALE_IF_ERROR_ONLY),
        (359.9, LookupState.STALE_IF_ERROR_ONLY),
        (360, LookupState.MISS),
    ]
    start = clock.now
    for offset, state in expected:
        clock.now = start + offset
        found, got = cache.lookup("k")
        assert got is state, offset
        assert (found is None) == (state is LookupState.MISS)
    assert len(cache) == 0
    assert cache.tagged_keys == 0


def test_age_is_whole_seconds_and_entry_fields(cache: ResponseCache, clock: FakeClock) -> None:
    entry = cache.make_entry(b"abc", policy=POLICY, headers={"X-Thing": "1"})
    assert entry.etag == etag_for(b"abc") and entry.etag.startswith('"')
    assert entry.headers == {"x-thing": "1"}
    clock.advance(41.99)
    assert cache.age(entry) == 41


def test_uncacheable_and_error_entries_are_not_stored(cache: ResponseCache) -> None:
    assert not cache.store("a", cache.make_entry(b"", policy=CachePolicy.uncacheable()))
    assert not cache.store("b", cache.make_entry(b"", policy=POLICY, status=503))
    assert len(cache) == 0


def test_entry_produced_long_ago_is_stored_only_for_what_is_left(
    cache: ResponseCache, clock: FakeClock
) -> None:
    entry = cache.make_entry(b"x", policy=CachePolicy(10))
    clock.advance(11)
    assert not cache.store("k", entry)
    entry = cache.make_entry(b"x", policy=CachePolicy(10))
    clock.advance(5)
    assert cache.store("k", entry)
    clock.advance(5)
    assert cache.lookup("k") == (None, LookupState.MISS)


async def test_miss_then_hit(cache: ResponseCache, clock: FakeClock) -> None:
    origin = Origin(cache)
    first, state = await cache.get_or_compute("k", origin)
    assert state is MISS
    clock.advance(59)
    second, state = await cache.get_or_compute("k", origin)
    assert state is HIT and second is first
    assert origin.calls == 1


async def test_200_concurrent_identical_misses_compute_once(cache: ResponseCache) -> None:
    origin = Origin(cache)
    origin.gate = asyncio.Event()
    requests = [asyncio.create_task(cache.get_or_compute("k", origin)) for _ in range(200)]
    await settle()
    origin.gate.set()
    results = await asyncio.gather(*requests)
    assert origin.calls == 1
    assert {id(entry) for entry, _ in results} == {id(results[0][0])}
    assert {state for _, state in results} == {MISS}
    assert cache.stats.coalesced == 199


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    cache: ResponseCache, clock: FakeClock
) -> None:
    origin = Origin(cache)
    old, _ = await cache.get_or_compute("k", origin)
    clock.advance(70)  # stale, inside the 30 s SWR window
    origin.gate = asyncio.Event()
    results = await asyncio.gather(*(cache.get_or_compute("k", origin) for _ in range(50)))
    assert all(entry is old and state is STALE for entry, state in results)
    assert cache.revalidating("k")
    assert cache.stats.revalidations == 1
    origin.gate.set()
    await settle()
    assert origin.calls == 2  # one initial fill, exactly one background refresh
    assert not cache.revalidating("k")
    fresh, state = await cache.get_or_compute("k", origin)
    assert fresh is not None
    assert state is HIT and fresh.body == b"body 2"
    assert cache.age(fresh) == 0


async def test_stale_if_error_when_compute_raises(cache: ResponseCache, clock: FakeClock) -> None:
    origin = Origin(cache)
    old, _ = await cache.get_or_compute("k", origin)
    clock.advance(200)  # past SWR, inside stale-if-error
    origin.fail = RuntimeError("db down")
    seen: list[tuple[str, BaseException]] = []
    entry, state = await cache.get_or_compute(
        "k", origin, on_error=lambda k, e: seen.append((k, e))
    )
    assert entry is old and state is STALE
    assert seen == [("k", origin.fail)]
    assert cache.stats.stale_if_error == 1


async def test_stale_if_error_when_compute_returns_an_error_response(
    cache: ResponseCache, clock: FakeClock
) -> None:
    origin = Origin(cache)
    old, _ = await cache.get_or_compute("k", origin)
    clock.advance(100)
    origin.status = 502
    seen: list[BaseException] = []
    entry, state = await cache.get_or_compute("k", origin, on_error=lambda _k, e: seen.append(e))
    assert entry is old and state is STALE
    assert isinstance(seen[0], UpstreamError) and seen[0].entry.status == 502
    assert cache.lookup("k")[0] is old  # the error did not replace the stale copy


async def test_no_stale_beyond_the_windows(cache: ResponseCache, clock: FakeClock) -> None:
    origin = Origin(cache)
    await cache.get_or_compute("k", origin)
    clock.advance(360)  # max_age 60 + stale-if-error 300 are over
    origin.status = 503
    entry, state = await cache.get_or_compute("k", origin)
    assert entry is not None and entry.status == 503 and state is MISS
    origin.fail = RuntimeError("db down")
    with pytest.raises(RuntimeError, match="db down"):
        await cache.get_or_compute("k", origin)


async def test_no_stale_if_error_without_a_window(cache: ResponseCache, clock: FakeClock) -> None:
    origin = Origin(cache, policy=CachePolicy(60))
    await cache.get_or_compute("k", origin)
    clock.advance(60)
    origin.fail = RuntimeError("down")
    with pytest.raises(RuntimeError):
        await cache.get_or_compute("k", origin)


async def test_failed_background_refresh_keeps_serving_stale_and_reports(
    cache: ResponseCache, clock: FakeClock
) -> None:
    origin = Origin(cache)
    old, _ = await cache.get_or_compute("k", origin)
    clock.advance(65)
    origin.fail = RuntimeError("flaky")
    seen: list[BaseException] = []
    entry, state = await cache.get_or_compute("k", origin, on_error=lambda _k, e: seen.append(e))
    assert entry is old and state is STALE
    await settle()
    assert seen == [origin.fail]
    assert cache.lookup("k") == (old, LookupState.STALE)
    # Still inside SWR: a new request starts a new (single) refresh, which now succeeds.
    origin.fail = None
    await cache.get_or_compute("k", origin)
    await settle()
    assert cache.lookup("k")[0].body == b"body 3"  # type: ignore[union-attr]


async def test_uncacheable_answer_is_passed_through_and_not_shared(
    cache: ResponseCache,
) -> None:
    origin = Origin(cache, policy=CachePolicy.uncacheable())
    origin.gate = asyncio.Event()
    requests = [asyncio.create_task(cache.get_or_compute("k", origin)) for _ in range(3)]
    await settle()
    origin.gate.set()
    results = await asyncio.gather(*requests)
    assert origin.calls == 3  # each joined caller ran its own compute
    assert len({entry.body for entry, _ in results if entry is not None}) == 3
    assert len(cache) == 0


async def test_private_answer_under_a_public_key_is_neither_stored_nor_shared(
    cache: ResponseCache,
) -> None:
    origin = Origin(cache, policy=CachePolicy(60, CacheScope.PRIVATE))
    origin.gate = asyncio.Event()
    requests = [asyncio.create_task(cache.get_or_compute("k", origin)) for _ in range(2)]
    await settle()
    origin.gate.set()
    (a, _), (b, _) = await asyncio.gather(*requests)
    assert a is not b and origin.calls == 2
    assert len(cache) == 0
    # Under a key built for one user it is stored.
    await cache.get_or_compute("u", origin, scope=CacheScope.PRIVATE)
    assert cache.lookup("u")[1] is LookupState.FRESH


async def test_uncacheable_answer_drops_the_older_stored_one(
    cache: ResponseCache, clock: FakeClock
) -> None:
    origin = Origin(cache)
    await cache.get_or_compute("k", origin)
    clock.advance(100)  # only stale-if-error left
    origin.policy = CachePolicy.uncacheable()
    _, state = await cache.get_or_compute("k", origin)
    assert state is MISS
    assert cache.lookup("k") == (None, LookupState.MISS)


async def test_compute_returning_none_bypasses_the_cache(cache: ResponseCache) -> None:
    async def streamed() -> None:
        return None

    assert await cache.get_or_compute("k", streamed) == (None, MISS)
    assert len(cache) == 0


async def test_purge_by_tag_and_by_key(cache: ResponseCache) -> None:
    for key, tags in [("a", ["item:1", "list"]), ("b", ["item:2", "list"]), ("c", ["item:3"])]:
        cache.store(key, cache.make_entry(b"x", policy=POLICY, tags=tags))
    assert cache.purge_tags(["item:1"]) == 1
    assert cache.lookup("a")[1] is LookupState.MISS
    assert cache.purge_tags(["list", "item:1"]) == 1
    assert cache.purge_keys(["c", "nope"]) == 1
    assert len(cache) == 0 and cache.tagged_keys == 0


async def test_purge_while_computing_serves_but_does_not_store(cache: ResponseCache) -> None:
    origin = Origin(cache, tags=("user:9",))
    origin.gate = asyncio.Event()
    request = asyncio.create_task(cache.get_or_compute("k", origin))
    await settle()
    cache.purge_tags(["user:9"])  # the data changed while the answer was being computed
    origin.gate.set()
    entry, state = await request
    assert entry is not None and state is MISS
    assert len(cache) == 0


async def test_cancelled_requester_does_not_cancel_the_fill(cache: ResponseCache) -> None:
    origin = Origin(cache)
    origin.gate = asyncio.Event()
    leader = asyncio.create_task(cache.get_or_compute("k", origin))
    follower = asyncio.create_task(cache.get_or_compute("k", origin))
    await settle()
    leader.cancel()
    await settle()
    origin.gate.set()
    entry, state = await follower
    assert state is MISS and origin.calls == 1
    assert leader.cancelled()
    assert cache.lookup("k") == (entry, LookupState.FRESH)


async def test_fill_finishes_and_stores_even_if_every_requester_left(
    cache: ResponseCache,
) -> None:
    origin = Origin(cache)
    origin.gate = asyncio.Event()
    request = asyncio.create_task(cache.get_or_compute("k", origin))
    await settle()
    request.cancel()
    origin.gate.set()
    await settle()
    assert cache.lookup("k")[1] is LookupState.FRESH


async def test_byte_bound_evicts_and_cleans_tags(clock: FakeClock) -> None:
    cache = ResponseCache(10_000, timer=clock)
    for i in range(100):
        entry = cache.make_entry(b"x" * 1000, policy=POLICY, tags=[f"item:{i}"])
        cache.store(f"k{i}", entry)
        assert cache.store_stats.bytes <= 10_000
    assert 0 < len(cache) < 10
    assert cache.tagged_keys == len(cache)
    assert cache.store_stats.evictions == 100 - len(cache)
    assert cache.purge_tags([f"item:{i}" for i in range(90)]) == 0  # long gone


async def test_expired_entries_leave_the_tag_index(cache: ResponseCache, clock: FakeClock) -> None:
    for i in range(50):
        cache.store(f"k{i}", cache.make_entry(b"x", policy=CachePolicy(10), tags=[f"t{i}"]))
    clock.advance(11)
    cache.store("new", cache.make_entry(b"x", policy=POLICY, tags=["t"]))
    assert cache.tagged_keys == 1


async def test_aclose_cancels_background_revalidation(
    cache: ResponseCache, clock: FakeClock
) -> None:
    origin = Origin(cache)
    await cache.get_or_compute("k", origin)
    clock.advance(61)
    origin.gate = asyncio.Event()
    await cache.get_or_compute("k", origin)
    await settle()
    assert cache.revalidating("k")
    await cache.aclose()
    assert not cache.revalidating("k")

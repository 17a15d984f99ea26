"""``cache.redis_tier.RedisTier`` against the real Redis: entries with their TTL, the PRIVATE
rule, the byte budget and its index, purge by tag and the purge fence, leases, APQ, and what
happens when nothing listens on the port."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from cache import CachedResponse, CachePolicy, CacheScope, ResponseCache
from cache.redis_tier import RedisConfig, RedisTier, decode_entry, encode_entry
from tests.redis_support import (
    REDIS_URL,
    PrivateRedis,
    free_port,
    private_redis,
    redis_prefix,
    shared_redis,
)

__all__ = ["private_redis", "redis_prefix"]

PUBLIC = CachePolicy(max_age=60, stale_while_revalidate=30)


def entry(
    body: bytes, *, tags: tuple[str, ...] = (), policy: CachePolicy = PUBLIC
) -> CachedResponse:
    return ResponseCache(timer=lambda: 1000.0).make_entry(
        body, policy=policy, headers={"Content-Type": "application/json"}, tags=tags
    )


@pytest.fixture
async def tier(redis_prefix: str) -> AsyncIterator[RedisTier]:
    shared_redis().close()
    t = RedisTier(aioredis.Redis.from_url(REDIS_URL), RedisConfig(prefix=redis_prefix))
    yield t
    await t.aclose()


def test_entries_round_trip_with_their_producer_clock() -> None:
    e = entry(b'{"data":1}', tags=("item:i1", "type:Item"))
    back = decode_entry(encode_entry(e))
    assert back == e
    with pytest.raises(ValueError):
        decode_entry(b"\x00\x00\x00\x09not json")


async def test_put_keeps_the_ttl_of_the_hints_and_lookup_reads_it_back(tier: RedisTier) -> None:
    e = entry(b'{"data":{"x":1}}', tags=("item:i1",))
    assert await tier.put("k1", e, CacheScope.PUBLIC, ttl_s=90, since_ms=0)
    found, now_ms = await tier.lookup("k1")
    assert found == e and now_ms > 0
    pttl = await tier.client.pttl(f"{tier.prefix}r:k1")
    assert 89_000 < pttl <= 90_000
    assert await tier.client.smembers(f"{tier.prefix}t:item:i1") == {f"{tier.prefix}r:k1".encode()}
    assert (await tier.lookup("other"))[0] is None


async def test_private_answers_are_never_written(tier: RedisTier) -> None:
    private = entry(b'{"me":"u1"}', policy=CachePolicy(60, CacheScope.PRIVATE))
    segment = entry(b'{"offer":"s3"}', policy=CachePolicy(60, CacheScope.SEGMENT))
    assert not await tier.put("k", private, CacheScope.PRIVATE, 60, 0)
    assert not await tier.put("k", private, CacheScope.PUBLIC, 60, 0)
    # An answer wider than its key's scope: a segment answer under a public key.
    assert not await tier.put("k", segment, CacheScope.PUBLIC, 60, 0)
    assert await tier.put("k", segment, CacheScope.SEGMENT, 60, 0)
    assert await tier.client.keys(f"{tier.prefix}r:*") == [f"{tier.prefix}r:k".encode()]


async def test_the_byte_budget_evicts_what_expires_first(redis_prefix: str) -> None:
    config = RedisConfig(prefix=redis_prefix, max_bytes=20_000, max_entry_bytes=5_000)
    tier = RedisTier(aioredis.Redis.from_url(REDIS_URL), config)
    try:
        body = b"x" * 3000
        for n in range(12):  # later entries live longer
            assert await tier.put(f"k{n}", entry(body, tags=("t",)), CacheScope.PUBLIC, 100 + n, 0)
        client = tier.client
        stored = sorted(k.decode() for k in await client.keys(f"{redis_prefix}r:*"))
        accounted = int(await client.get(f"{redis_prefix}i:bytes"))
        assert accounted <= 20_000
        values = sum([await client.strlen(k) for k in stored])
        assert values <= accounted
        # The index holds exactly the stored keys; the survivors are the longest-lived ones.
        assert sorted(k.decode() for k in await client.hkeys(f"{redis_prefix}i:size")) == stored
        assert stored == sorted(f"{redis_prefix}r:k{n}" for n in range(12 - len(stored), 12))
        assert len(stored) >= 5 and tier.stats["evicted"] == 12 - len(stored)
        tagged = {k.decode() for k in await client.smembers(f"{redis_prefix}t:t")}
        assert tagged == set(stored)
        # Bigger than the per-entry cap: never written.
        assert not await tier.put("big", entry(b"y" * 6000), CacheScope.PUBLIC, 100, 0)
        assert await client.exists(f"{redis_prefix}r:big") == 0
        # A persisted query counts in the same budget.
        assert await tier.put_query("a" * 64, "{ x }")
        assert await tier.get_query("a" * 64) == "{ x }"
        assert int(await client.get(f"{redis_prefix}i:bytes")) <= 20_000
    finally:
        await tier.aclose()


async def test_purge_by_tag_drops_entries_and_their_index(tier: RedisTier) -> None:
    await tier.put("a", entry(b"1", tags=("item:i1", "type:Item")), CacheScope.PUBLIC, 60, 0)
    await tier.put("b", entry(b"2", tags=("item:i2", "type:Item")), CacheScope.PUBLIC, 60, 0)
    await tier.put("c", entry(b"3", tags=("item:i3",)), CacheScope.PUBLIC, 60, 0)
    assert await tier.purge("tags", ["type:Item"]) == 2
    assert (await tier.lookup("a"))[0] is None and (await tier.lookup("b"))[0] is None
    assert (await tier.lookup("c"))[0] is not None
    client = tier.client
    assert await client.exists(f"{tier.prefix}t:item:i1", f"{tier.prefix}t:type:Item") == 0
    assert await client.hkeys(f"{tier.prefix}i:size") == [f"{tier.prefix}r:c".encode()]
    assert await tier.purge("keys", ["c"]) == 1
    await tier.put("d", entry(b"4"), CacheScope.PUBLIC, 60, 0)
    assert await tier.purge("all") == 1
    assert int(await client.get(f"{tier.prefix}i:bytes")) == 0


async def test_a_fill_older_than_a_purge_does_not_store(tier: RedisTier) -> None:
    _none, since = await tier.lookup("k")
    await tier.purge("tags", ["item:i1"])  # another instance purged while "k" was computed
    assert not await tier.put("k", entry(b"old", tags=("item:i1",)), CacheScope.PUBLIC, 60, since)
    assert tier.stats["fenced"] == 1
    assert await tier.put("k", entry(b"other", tags=("item:i2",)), CacheScope.PUBLIC, 60, since)
    _none, later = await tier.lookup("k2")
    assert await tier.put("k2", entry(b"new", tags=("item:i1",)), CacheScope.PUBLIC, 60, later)


async def test_one_lease_per_key(tier: RedisTier) -> None:
    lease = await tier.acquire("k")
    assert lease is not None
    assert await tier.acquire("k") is None
    await tier.put("k", entry(b"v"), CacheScope.PUBLIC, 60, 0)
    waited = await tier.wait_for("k")
    assert waited is not None and waited.body == b"v"
    await tier.release(lease)
    again = await tier.acquire("k")
    assert again is not None
    await tier.release(again)
    assert await tier.wait_for("nobody-holds-it") is None  # no lease: returns at once


async def test_purges_are_published_to_the_fleet(tier: RedisTier, redis_prefix: str) -> None:
    listener = tier.client.pubsub()
    await listener.subscribe(f"{redis_prefix}events")
    await listener.get_message(timeout=1.0)  # the subscribe confirmation
    await tier.purge("tags", ["user:u1"], {"admin": True})
    msg = await listener.get_message(ignore_subscribe_messages=True, timeout=2.0)
    assert msg is not None
    assert json.loads(msg["data"]) == {
        "op": "tags",
        "from": tier.instance,
        "names": ["user:u1"],
        "admin": True,
    }
    await listener.aclose()


async def test_nothing_listening_means_misses_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    client = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{port}/0", socket_timeout=0.2, socket_connect_timeout=0.2
    )
    tier = RedisTier(client, RedisConfig(prefix="tailortest:down:"))
    with caplog.at_level(logging.WARNING, logger="tailor.redis"):
        assert await tier.lookup("k") == (None, 0)
        for _ in range(5):
            assert await tier.lookup("k") == (None, 0)
            assert not await tier.put("k", entry(b"v"), CacheScope.PUBLIC, 60, 0)
            assert await tier.acquire("k") is None
            assert await tier.get_query("a" * 64) is None
            assert await tier.purge("tags", ["x"]) == 0
    assert not tier.available
    assert tier.snapshot()["error"]
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert len(caplog.records) == 1
    await tier.aclose()


async def test_purges_missed_while_down_are_replayed_when_redis_returns(
    private_redis: PrivateRedis,
) -> None:
    private_redis.start()
    client = aioredis.Redis.from_url(
        private_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2
    )
    tier = RedisTier(client, RedisConfig(prefix="tailor:", retry_s=0.05))
    reconnects: list[bool] = []
    await tier.start(lambda _m: None, lambda: reconnects.append(True))
    assert tier.available
    private_redis.kill()
    await tier.purge("tags", ["item:i1"])  # fails: remembered
    await tier.purge("tags", ["item:i2"])  # down: remembered without trying
    assert not tier.available
    private_redis.start()
    watcher = aioredis.Redis.from_url(private_redis.url).pubsub()
    await watcher.subscribe("tailor:events")
    await watcher.get_message(timeout=1.0)
    replayed = None
    for _ in range(100):
        replayed = await watcher.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if replayed is not None:
            break
    assert replayed is not None, "the missed purges were not replayed"
    message = json.loads(replayed["data"])
    assert message["op"] == "tags" and message["names"] == ["item:i1", "item:i2"]
    assert tier.available and reconnects == [True]
    await watcher.aclose()
    await tier.aclose()


async def test_a_slow_moment_turns_the_tier_off_briefly_and_drops_nothing(
    private_redis: PrivateRedis,
) -> None:
    private_redis.start()
    client = aioredis.Redis.from_url(
        private_redis.url, socket_timeout=0.2, socket_connect_timeout=0.2
    )
    tier = RedisTier(client, RedisConfig(prefix="tailor:", retry_s=0.05))
    reconnects: list[bool] = []
    await tier.start(lambda _m: None, lambda: reconnects.append(True))
    other = redis.Redis(port=private_redis.port)
    sleeping = asyncio.ensure_future(
        asyncio.to_thread(other.execute_command, "DEBUG", "SLEEP", "1")
    )
    await asyncio.sleep(0.1)
    assert await tier.lookup("k") == (None, 0)  # timed out: a miss, not an error
    assert not tier.available
    await sleeping
    for _ in range(100):
        if tier.available:
            break
        await asyncio.sleep(0.05)
    assert tier.available
    assert reconnects == []  # the subscription never broke: nothing to drop
    other.close()
    await tier.aclose()

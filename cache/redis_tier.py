"""``RedisTier``: the Redis shared level under each instance's in-process ``ResponseCache``.

One Redis (standalone or a primary; not Cluster: the scripts touch keys they compute) shared
by every gateway of a fleet holds, under one key prefix ``P`` (``redis_prefix``):

=====================  ====================================================================
``P r:<cache key>``    a stored answer (``encode_entry``), PUBLIC or SEGMENT scope only
``P q:<sha256>``       a persisted query's text (APQ), so a hash registered once is known
``P t:<tag>``          set of the ``P r:`` keys carrying ``tag`` (the purge-by-tag index)
``P i:exp``            sorted set: every sized key -> its expiry (server ms)
``P i:size``           hash: every sized key -> the bytes it is accounted for
``P i:tags``           hash: every tagged key -> its tags (JSON), to unlink it on removal
``P i:bytes``          the sum of ``P i:size``: what the byte budget bounds
``P l:<cache key>``    a single-flight lease (``SET NX PX``) on a miss being computed
``P p:<tag>``,         purge markers (server ms of the last purge, kept ``marker_ttl_ms``):
``P pk:<key>``,        a fill that started before one of them must not store its answer
``P pa``
``P events``           the pub/sub channel of fleet messages (purges, model announcements)
=====================  ====================================================================

The byte budget is enforced here, not by the server's ``maxmemory``: every write runs one Lua
script (``cache/redis_scripts.py``) that drops expired keys from the index, replaces the key, then evicts the keys closest
to expiry until ``P i:bytes <= max_bytes``. An entry larger than ``max_entry_bytes`` is never
written. Accounted bytes are the value's length plus a fixed overhead per key and per tag.

PRIVATE answers are never written here (``put`` refuses them): a shared store must not hold
what only one user may see. Their invalidations still cross the fleet as messages.

Failure: every call catches Redis and socket errors, marks the tier unavailable (logged once)
and answers "nothing" (a miss, no lease, nothing stored); while unavailable no call reaches
Redis, so requests never wait on timeouts. The listener task retries every ``retry_s``; when
Redis answers again the tier is available and purges that could not be sent are replayed. When
the subscription itself broke, ``on_reconnect`` runs too (the owner drops its in-process
entries: it may have missed messages); a failed command while the subscription stayed up (a
slow moment) only turns the tier off until Redis answers a ping again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cache.redis_scripts import LUA_PURGE, LUA_PUT, LUA_RELEASE
from cache.types import CachedResponse, CachePolicy, CacheScope

log = logging.getLogger("tailor.redis")

#: A fleet message as sent on ``P events`` (a JSON object; ``op`` says what it is).
Message = dict[str, Any]

# Accounted per sized key besides its value (the key itself, the index slots) and per tag.
KEY_OVERHEAD = 160
TAG_OVERHEAD = 64
_HEADER = struct.Struct(">I")
_FAILURES = (RedisError, OSError, asyncio.TimeoutError)
# Most tags remembered for replay while Redis is down; beyond it the replay purges everything.
_MAX_MISSED_TAGS = 10_000


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Knobs of the shared tier. Bytes, seconds; see the module docstring for the layout."""

    prefix: str = "tailor:"
    max_bytes: int = 256 * 1024 * 1024  # every sized key of this prefix together
    max_entry_bytes: int = 1024 * 1024  # one answer or persisted query
    lock_s: float = 5.0  # a single-flight lease's lifetime (a crashed leader frees it)
    lock_wait_s: float = 1.0  # how long a follower waits for the leader's answer
    apq_ttl_s: int = 7 * 86_400  # a persisted query's lifetime in Redis
    marker_ttl_s: float = 60.0  # purge markers (longer than any fill)
    retry_s: float = 1.0  # reconnect interval while Redis is unavailable


def encode_entry(entry: CachedResponse) -> bytes:
    """``[4-byte meta length][meta JSON][body]``; ``stored_at`` is the producer's clock (the
    app's wall clock), so every instance reads the same age."""
    meta = json.dumps(
        {
            "s": entry.status,
            "h": dict(entry.headers),
            "p": [
                entry.policy.max_age,
                int(entry.policy.scope),
                entry.policy.stale_while_revalidate,
                entry.policy.stale_if_error,
            ],
            "t": sorted(entry.tags),
            "a": entry.stored_at,
            "e": entry.etag,
        },
        separators=(",", ":"),
    ).encode()
    return _HEADER.pack(len(meta)) + meta + entry.body


def decode_entry(raw: bytes) -> CachedResponse:
    """The inverse of :func:`encode_entry` (raises ``ValueError`` on a malformed value)."""
    try:
        (n,) = _HEADER.unpack_from(raw)
        meta = json.loads(raw[_HEADER.size : _HEADER.size + n])
        max_age, scope, swr, sie = meta["p"]
        return CachedResponse(
            body=bytes(raw[_HEADER.size + n :]),
            headers=dict(meta["h"]),
            status=int(meta["s"]),
            policy=CachePolicy(max_age, CacheScope(scope), swr, sie),
            tags=frozenset(meta["t"]),
            stored_at=float(meta["a"]),
            etag=str(meta["e"]),
        )
    except (struct.error, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a cached entry: {exc}") from exc


@dataclass(slots=True)
class Lease:
    """A held single-flight lease on one miss key (release it when the fill ends)."""

    key: str
    token: str


class RedisTier:
    """The shared level, APQ store and fleet channel over one ``redis.asyncio.Redis`` client.

    Implements ``cache.types.SharedLevel`` (what ``ResponseCache`` calls). Safe to share
    between the tasks of one event loop. ``instance`` names this process in messages (a
    random id by default) so it ignores its own.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        config: RedisConfig = RedisConfig(),
        *,
        instance: str | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.prefix = config.prefix
        self.channel = config.prefix + "events"
        self.instance = instance or secrets.token_hex(8)
        self.available = True
        self.last_error: str | None = None
        self.down_since: float | None = None
        self.stats = {"hits": 0, "misses": 0, "stored": 0, "evicted": 0, "fenced": 0}
        self._put = client.register_script(LUA_PUT)
        self._purge = client.register_script(LUA_PURGE)
        self._release = client.register_script(LUA_RELEASE)
        self._missed_tags: set[str] = set()
        self._missed_all = False
        self._listener: asyncio.Task[None] | None = None
        self._started = asyncio.Event()  # the listener's first attempt is over

    # -- health ----------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        if self.available:
            # Once per outage, not per request: the listener logs the recovery.
            log.warning(
                "redis unavailable (%s); serving from the in-process tier until it returns",
                exc or type(exc).__name__,
            )
            self.down_since = time.time()
        self.available = False
        self.last_error = str(exc) or type(exc).__name__

    def snapshot(self) -> dict[str, Any]:
        """For ``/readyz``: whether Redis answers, since when not, and the counters."""
        return {
            "available": self.available,
            "error": None if self.available else self.last_error,
            "down_since": None if self.available else self.down_since,
            "prefix": self.prefix,
            **self.stats,
        }

    # -- responses (cache.types.SharedLevel) -----------------------------------------------

    def _rkey(self, key: str) -> str:
        return f"{self.prefix}r:{key}"

    async def lookup(self, key: str) -> tuple[CachedResponse | None, int]:
        """The stored answer (or None) and Redis's clock in ms (0 when unavailable): a fill
        that stores later passes that time back so purges since then fence it."""
        if not self.available:
            return None, 0
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(self._rkey(key))
            pipe.time()
            raw, (sec, usec) = await pipe.execute()
        except _FAILURES as exc:
            self._failed(exc)
            return None, 0
        now_ms = sec * 1000 + usec // 1000
        if raw is None:
            self.stats["misses"] += 1
            return None, now_ms
        try:
            entry = decode_entry(raw)
        except ValueError:
            log.warning("redis %s: undecodable entry dropped", self._rkey(key))
            return None, now_ms
        self.stats["hits"] += 1
        return entry, now_ms

    async def put(
        self, key: str, entry: CachedResponse, scope: CacheScope, ttl_s: float, since_ms: int
    ) -> bool:
        """Store ``entry`` for ``ttl_s`` unless it is PRIVATE, wider than the key's ``scope``,
        over the per-entry cap, or a purge reached Redis after ``since_ms``."""
        if (
            not self.available
            or scope is CacheScope.PRIVATE
            or entry.policy.scope is CacheScope.PRIVATE
            or entry.policy.scope > scope
        ):
            return False
        value = encode_entry(entry)
        ttl_ms = int(ttl_s * 1000)
        size = len(value) + KEY_OVERHEAD + sum(len(t) + TAG_OVERHEAD for t in entry.tags)
        if ttl_ms <= 0 or size > self.config.max_entry_bytes:
            return False
        tags = json.dumps(sorted(entry.tags))
        result = await self._run_put(self._rkey(key), value, ttl_ms, size, tags, since_ms, key)
        return result is not None and result >= 0

    async def _run_put(
        self, rkey: str, value: bytes | str, ttl_ms: int, size: int, tags: str, since: int, ck: str
    ) -> int | None:
        args = [self.prefix, rkey, value, ttl_ms, size, tags, self.config.max_bytes, since, ck]
        try:
            result = int(await self._put(args=args))
        except _FAILURES as exc:
            self._failed(exc)
            return None
        if result < 0:
            self.stats["fenced"] += 1
        else:
            self.stats["stored"] += 1
            self.stats["evicted"] += result
        return result

    async def acquire(self, key: str) -> Lease | None:
        """A single-flight lease on ``key`` (None: someone else holds it, or no Redis)."""
        if not self.available:
            return None
        token = secrets.token_hex(8)
        try:
            got = await self.client.set(
                f"{self.prefix}l:{key}", token, nx=True, px=int(self.config.lock_s * 1000)
            )
        except _FAILURES as exc:
            self._failed(exc)
            return None
        return Lease(key, token) if got else None

    async def release(self, lease: Lease) -> None:
        if not self.available:
            return
        try:
            await self._release(keys=[f"{self.prefix}l:{lease.key}"], args=[lease.token])
        except _FAILURES as exc:
            self._failed(exc)

    async def wait_for(self, key: str) -> CachedResponse | None:
        """Wait (at most ``lock_wait_s``) for the lease holder's answer to ``key``; None when
        the lease ends without one (not storable, or the leader failed) or time runs out."""
        deadline = time.monotonic() + self.config.lock_wait_s
        delay = 0.002
        while self.available and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.get(self._rkey(key))
                pipe.exists(f"{self.prefix}l:{key}")
                raw, leased = await pipe.execute()
            except _FAILURES as exc:
                self._failed(exc)
                return None
            if raw is not None:
                try:
                    entry = decode_entry(raw)
                except ValueError:
                    return None
                self.stats["hits"] += 1
                return entry
            if not leased:
                return None
        return None

    async def purge(
        self, mode: str, names: Iterable[str] = (), note: Mapping[str, Any] | None = None
    ) -> int:
        """Drop entries by ``mode`` ``tags``/``keys``/``all`` and publish the purge to the
        fleet (with ``note`` merged into the message) in one script; returns how many were
        dropped. While Redis is down the purge is remembered and replayed on reconnect."""
        name_list = list(names)
        message: Message = {"op": mode, "from": self.instance, "names": name_list, **(note or {})}
        if not self.available:
            self._remember(mode, name_list)
            return 0
        try:
            return await self._run_purge(mode, name_list, json.dumps(message))
        except _FAILURES as exc:
            self._failed(exc)
            self._remember(mode, name_list)
            return 0

    async def _run_purge(self, mode: str, names: list[str], message: str) -> int:
        marker_ms = int(self.config.marker_ttl_s * 1000)
        return int(await self._purge(args=[self.prefix, mode, marker_ms, message, *names]))

    def _remember(self, mode: str, names: list[str]) -> None:
        # Keys are entry hashes: replaying "all" for them is the only safe summary.
        if mode != "tags" or len(self._missed_tags) + len(names) > _MAX_MISSED_TAGS:
            self._missed_all, self._missed_tags = True, set()
        elif not self._missed_all:
            self._missed_tags.update(names)

    async def _replay_missed(self) -> None:
        if self._missed_all:
            mode, names = "all", []
        elif self._missed_tags:
            mode, names = "tags", sorted(self._missed_tags)
        else:
            return
        message = json.dumps({"op": mode, "from": self.instance, "names": names})
        await self._run_purge(mode, names, message)
        log.info("redis: replayed %s purge(s) missed while it was unavailable", len(names) or mode)
        self._missed_all, self._missed_tags = False, set()

    # -- persisted queries -----------------------------------------------------------------

    async def get_query(self, digest: str) -> str | None:
        """A persisted query's text registered by any instance (None: unknown or no Redis)."""
        if not self.available:
            return None
        try:
            raw = await self.client.get(f"{self.prefix}q:{digest}")
        except _FAILURES as exc:
            self._failed(exc)
            return None
        if raw is None:
            return None
        return raw if isinstance(raw, str) else bytes(raw).decode("utf-8")

    async def put_query(self, digest: str, query: str) -> bool:
        """Register a query for the fleet (counted in the byte budget, ``apq_ttl_s``)."""
        if not self.available:
            return False
        value = query.encode("utf-8")
        size = len(value) + KEY_OVERHEAD
        if size > self.config.max_entry_bytes:
            return False
        ttl_ms = self.config.apq_ttl_s * 1000
        result = await self._run_put(f"{self.prefix}q:{digest}", value, ttl_ms, size, "[]", 0, "")
        return result is not None and result >= 0

    # -- the fleet channel -----------------------------------------------------------------

    async def publish(self, message: Message) -> bool:
        """Send a message to every other instance (False when Redis is unavailable)."""
        if not self.available:
            return False
        try:
            await self.client.publish(self.channel, json.dumps({"from": self.instance, **message}))
        except _FAILURES as exc:
            self._failed(exc)
            return False
        return True

    async def start(
        self, on_message: Callable[[Message], Any], on_reconnect: Callable[[], Any]
    ) -> None:
        """Start the listener (a task): ``on_message`` gets every other instance's messages,
        ``on_reconnect`` runs when Redis returns after an outage. Waits (up to 2 s) for the
        first subscription so that messages sent after ``start`` returns are not missed; when
        Redis is down it returns at the first failure (the listener keeps retrying)."""
        self._listener = asyncio.create_task(self._listen(on_message, on_reconnect))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), 2.0)

    async def _listen(
        self, on_message: Callable[[Message], Any], on_reconnect: Callable[[], Any]
    ) -> None:
        lost = False  # the subscription broke: messages may have been missed meanwhile
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._recover(on_reconnect, lost)
                lost = False
                self._started.set()
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._dispatch(msg["data"], on_message)
                    if not self.available:
                        # A command failed elsewhere while the subscription stayed up: nothing
                        # was missed here, so back on as soon as Redis answers a ping (a ping
                        # that fails too is no news; a broken subscription raises above).
                        with contextlib.suppress(*_FAILURES):
                            await self._recover(on_reconnect, False)
            except _FAILURES as exc:
                self._failed(exc)
                self._started.set()
                lost = True
            finally:
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()
            await asyncio.sleep(self.config.retry_s)

    async def _recover(self, on_reconnect: Callable[[], Any], lost: bool) -> None:
        """Redis answers again (raises if not): replay what this instance could not send,
        and when the subscription was lost let the owner drop what it may hold stale."""
        await self.client.ping()
        if self.available and not lost:
            return
        await self._replay_missed()
        if not self.available:
            log.warning("redis is back: the shared tier is on again")
        self.available = True
        if lost:
            on_reconnect()

    def _dispatch(self, data: Any, on_message: Callable[[Message], Any]) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            log.warning("redis %s: undecodable message dropped", self.channel)
            return
        if not isinstance(message, dict) or message.get("from") == self.instance:
            return
        try:
            on_message(message)
        except Exception:  # one bad message must not stop the listener
            log.exception("redis %s: handling %r failed", self.channel, message.get("op"))

    async def aclose(self) -> None:
        """Stop the listener and close the client's connections."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        with contextlib.suppress(*_FAILURES):
            await self.client.aclose()

    async def delete_prefix(self) -> int:
        """Delete every key under this prefix (tests and ``tailor`` maintenance); SCAN-based."""
        count = 0
        async for k in self.client.scan_iter(match=f"{self.prefix}*", count=500):
            count += int(await self.client.delete(k))
        return count

"""Rate limits shared by every gateway instance, in Redis, with the ``limits`` library.

With ``redis_url`` set, each client's budget lives in Redis (``limits``' sliding window counter,
atomic on the server), so two instances behind a load balancer hold one limit between them, not
one each. The per-client token bucket of ``rate_per_s`` with ``burst`` becomes a window of
``burst`` requests per ``ceil(burst / rate_per_s)`` seconds: the same burst, and an average rate
no higher than configured.

If Redis cannot be reached the gateway keeps answering: the limit falls back to this process's
own token buckets (logged once, and once more when Redis is back).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("tailor.ratelimit")


class RateLimiter(Protocol):
    """``await take(key)``: 0.0 when the request may go, else seconds until it may."""

    async def take(self, key: str) -> float: ...


class LocalBuckets(Protocol):
    def take(self, key: str) -> float: ...


class RedisRateLimiter:
    """A shared limit per client key in Redis at ``url`` (keys under ``prefix``); ``fallback``
    (this process's token buckets) answers while Redis is unavailable."""

    def __init__(
        self,
        url: str,
        *,
        rate_per_s: float,
        burst: int,
        prefix: str,
        fallback: LocalBuckets,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Imported here, not at module level: only a deployment with Redis needs the library.
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import SlidingWindowCounterRateLimiter

        burst = max(burst, 1)
        self.item = RateLimitItemPerSecond(burst, max(1, math.ceil(burst / rate_per_s)))
        self.storage = RedisStorage(
            url if url.startswith("async+") else f"async+{url}",
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.fallback = fallback
        self.clock = clock
        self.degraded = False

    async def take(self, key: str) -> float:
        try:
            if await self.limiter.hit(self.item, key):
                wait = 0.0
            else:
                stats = await self.limiter.get_window_stats(self.item, key)
                wait = max(stats.reset_time - self.clock(), 0.001)
        except Exception as exc:  # any Redis failure: keep answering with local limits
            if not self.degraded:
                log.warning("rate limits: Redis unavailable (%r); limiting per instance", exc)
                self.degraded = True
            return self.fallback.take(key)
        if self.degraded:
            log.warning("rate limits: Redis is back; limits are shared again")
            self.degraded = False
        return wait

"""Request guards as one pure-ASGI middleware: per-client rate limit, concurrency limit, timeout.

Order per request: rate limit (429 + ``Retry-After``) -> concurrency limit (503 +
``Retry-After``) -> timeout (504; the handler task is cancelled at its next await). Pure ASGI
rather than ``BaseHTTPMiddleware`` so the request runs in the caller's task: context variables
(the privacy opt-out) flow through, and a timeout cancels the real work.

Clients are keyed by the verified token subject (API keys arrive here already exchanged for a
token with subject ``apikey:<id>``), else by IP (``X-Forwarded-For``'s first hop only when the
deployment says a trusted proxy sets it). A forged token does not choose its bucket: it is keyed
by IP, like an anonymous caller.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
import orjson
from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.security.auth import ALGORITHM
from resolvers.context import ADMIN_SCOPES as PRIVILEGED

log = logging.getLogger("tailor.ratelimit")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """``rate_per_s``/``burst``: token bucket per client (0 = off). ``max_concurrency``: requests
    in flight (0 = off). ``timeout_s``: seconds per request (0 = off). ``exempt``: paths that
    skip every guard (health checks)."""

    rate_per_s: float = 50.0
    burst: int = 100
    max_concurrency: int = 64
    timeout_s: float = 10.0
    trust_forwarded_for: bool = False
    exempt: tuple[str, ...] = ("/healthz", "/readyz")


class TokenBuckets:
    """Token buckets per key, bounded in memory (least recently seen keys are evicted)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(max(burst, 1))
        self.clock = clock
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(max_keys)

    def take(self, key: str) -> float:
        """0.0 when a token was taken, else seconds until the next token."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class ClientKey:
    """Who a request counts against: ``sub:<subject>`` for a valid bearer token, else ``ip:<ip>``.

    ``None`` for a token with the admin or service scope: trusted server-to-server callers (bulk
    event imports, edge workers) are not rate limited; the concurrency limit still applies.
    """

    def __init__(
        self,
        secret: str,
        issuer: str | None,
        audience: str | None,
        *,
        trust_forwarded_for: bool = False,
    ) -> None:
        self.secret, self.issuer, self.audience = secret, issuer, audience
        self.trust_forwarded_for = trust_forwarded_for
        # token -> (subject, exp): verifying a signature per request is the costly part.
        self._verified: LRUCache[bytes, tuple[str, float]] = LRUCache(10_000)

    def __call__(self, scope: Scope) -> str | None:
        auth = forwarded = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-forwarded-for":
                forwarded = value
        if auth and auth[:7].lower() == b"bearer ":
            sub = self._subject(auth[7:].strip())
            if sub == "":
                return None
            if sub is not None:
                return f"sub:{sub}"
        if forwarded and self.trust_forwarded_for:
            return "ip:" + forwarded.split(b",")[0].strip().decode("latin-1")
        client = scope.get("client")
        return f"ip:{client[0] if client else 'unknown'}"

    def _subject(self, token: bytes) -> str | None:
        """The verified subject, ``""`` for a privileged token, None when not valid."""
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.InvalidTokenError:
            return None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            return None
        raw = claims.get("scope", claims.get("scopes", ""))
        scopes = raw.split() if isinstance(raw, str) else [str(x) for x in raw or []]
        if PRIVILEGED & set(scopes):
            sub = ""
        self._verified[token] = (sub, float(claims["exp"]))
        return sub


class RequestGuard:
    """The middleware: rate limit, then concurrency limit, then timeout."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: GuardConfig,
        client_key: Callable[[Scope], str | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.config = config
        self.client_key = client_key
        self.buckets = (
            TokenBuckets(config.rate_per_s, config.burst, clock=clock)
            if config.rate_per_s > 0
            else None
        )
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cfg = self.config
        if scope["type"] != "http" or scope.get("path") in cfg.exempt:
            await self.app(scope, receive, send)
            return
        key = self.client_key(scope) if self.buckets is not None else None
        if key is not None and self.buckets is not None:
            wait = self.buckets.take(key)
            if wait > 0:
                await send_problem(
                    send,
                    429,
                    "too many requests; slow down",
                    "RATE_LIMITED",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return
        if cfg.max_concurrency and self.in_flight >= cfg.max_concurrency:
            await send_problem(
                send,
                503,
                "the server is busy; retry shortly",
                "SERVICE_UNAVAILABLE",
                {"Retry-After": "1"},
            )
            return
        self.in_flight += 1
        try:
            if cfg.timeout_s <= 0:
                await self.app(scope, receive, send)
            else:
                await self._with_timeout(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _with_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(self.config.timeout_s):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            log.warning(
                "request %s %s timed out after %.1fs",
                scope.get("method"),
                scope.get("path"),
                self.config.timeout_s,
            )
            if not started:
                await send_problem(
                    send, 504, "the request took too long and was cancelled", "GATEWAY_TIMEOUT"
                )


async def send_problem(
    send: Send, status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> None:
    """Answer a request directly from ASGI middleware with a GraphQL-shaped error body."""
    body = orjson.dumps({"errors": [{"message": message, "extensions": {"code": code}}]})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})

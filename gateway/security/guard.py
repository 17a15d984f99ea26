"""Request guards as one pure-ASGI middleware: per-client rate limit, body read, concurrency
limit, timeout.

Order per request: rate limit (429 + ``Retry-After``) -> the body is read, with a deadline and a
minimum data rate (408 + ``Connection: close``; 413 past the body limit) -> concurrency limit
(503 + ``Retry-After``) -> timeout (504; the handler task is cancelled at its next await). A
request does not hold an execution slot while its client is still sending the body, so slow
senders cannot starve the requests that are ready to run; ``/admin/*`` has ``reserve`` slots of
its own beyond the limit and the health checks skip every guard. Pure ASGI rather than
``BaseHTTPMiddleware`` so the request runs in the caller's task: context variables (the privacy
opt-out) flow through, and a timeout cancels the real work.

Clients are keyed by the verified token subject (API keys arrive here already exchanged for a
token with subject ``apikey:<id>``), else by IP. ``X-Forwarded-For`` is read only when the
deployment says a trusted proxy sets it, and only when the connection comes from one of the
``trusted_proxies``: the client is then the right-most hop that is not a trusted proxy (hops to
its left are written by the client and never chosen). A forged token does not choose its bucket:
it is keyed by IP, like an anonymous caller.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from cachetools import LRUCache
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http import ResponseStarted
from gateway.security.auth import AuthError, read_token
from gateway.security.jwks import JwksKeys
from gateway.security.ratelimit import RateLimiter
from resolvers.context import ADMIN_SCOPES as PRIVILEGED

log = logging.getLogger("tailor.ratelimit")


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """``rate_per_s``/``burst``: token bucket per client (0 = off). ``max_concurrency``: requests
    executing (0 = off); ``reserve`` more slots only paths under ``reserved_prefixes`` may use.
    ``timeout_s``: seconds per request once its body is read (0 = off). ``exempt``: paths that
    skip every guard (health checks). Bodies: at most ``max_body`` bytes, received within
    ``body_read_timeout_s`` plus one second per ``body_min_bytes_per_s`` bytes received so far
    (0 = no rate term)."""

    rate_per_s: float = 50.0
    burst: int = 100
    max_concurrency: int = 64
    timeout_s: float = 10.0
    trust_forwarded_for: bool = False
    exempt: tuple[str, ...] = ("/healthz", "/readyz")
    reserve: int = 8
    reserved_prefixes: tuple[str, ...] = ("/admin/",)
    max_body: int = 1_000_000
    body_read_timeout_s: float = 10.0
    body_min_bytes_per_s: float = 1024.0


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
        trusted_proxies: Sequence[str] = ("127.0.0.1", "::1"),
        keys: JwksKeys | None = None,
    ) -> None:
        self.secret, self.issuer, self.audience = secret, issuer, audience
        self.keys = keys
        self.trust_forwarded_for = trust_forwarded_for
        self.trusted_proxies = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        # token -> (subject, exp): verifying a signature per request is the costly part.
        self._verified: LRUCache[bytes, tuple[str, float]] = LRUCache(10_000)

    def __call__(self, scope: Scope) -> str | None:
        auth = None
        forwarded: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-forwarded-for":
                forwarded.append(value)
        if auth and auth[:7].lower() == b"bearer ":
            sub = self._subject(auth[7:].strip())
            if sub == "":
                return None
            if sub is not None:
                return f"sub:{sub}"
        client = scope.get("client")
        peer = str(client[0]) if client else "unknown"
        if forwarded and self.trust_forwarded_for:
            return "ip:" + self.forwarded_client(peer, forwarded)
        return f"ip:{peer}"

    def trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def forwarded_client(self, peer: str, forwarded: list[bytes]) -> str:
        """The client address behind trusted proxies: the right-most ``X-Forwarded-For`` hop
        that is not a trusted proxy. The header is ignored unless the connection itself comes
        from a trusted proxy; a hop that is not an IP address ends the walk (every proxy we
        trust appends an address, so it was written by the client)."""
        address = _parse_ip(peer)
        if address is None or not self.trusted(address):
            return peer
        chosen = str(address)
        hops = b",".join(forwarded).split(b",")
        for raw in reversed(hops[-_MAX_HOPS:]):
            hop = _parse_ip(raw.decode("latin-1"))
            if hop is None:
                break
            chosen = str(hop)
            if not self.trusted(hop):
                break
        return chosen

    def _subject(self, token: bytes) -> str | None:
        """The verified subject, ``""`` for a privileged token, None when not valid.

        Claims are validated by ``auth.read_token`` (the same rules as authentication): a
        validly signed token with odd claims is "no subject" here, keyed by IP, and answered
        401 by the route, never a crash of the guard."""
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        try:
            claims = read_token(
                token.decode("latin-1"),
                secret=self.secret,
                issuer=self.issuer,
                audience=self.audience,
                max_ttl_s=None,  # the route enforces the lifetime; a bucket only needs the key
                keys=self.keys,
            )
        except AuthError:
            return None
        sub = "" if PRIVILEGED & claims.scopes else claims.subject
        self._verified[token] = (sub, claims.expires_at)
        return sub


_MAX_HOPS = 32  # X-Forwarded-For hops looked at, from the right


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a forwarded hop (``1.2.3.4``, ``1.2.3.4:56``, ``[::1]:80``, ``::1``)."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit():
                return None
            return int(text) if len(text) <= 18 else 10**18  # int() refuses >4300 digits
    return None


class RequestGuard:
    """The middleware: rate limit, then body read, then concurrency limit, then timeout.

    ``in_flight``: requests holding an execution slot; ``reading``: requests whose body is
    still being received (they hold no slot)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: GuardConfig,
        client_key: Callable[[Scope], str | None],
        clock: Callable[[], float] = time.monotonic,
        shared_limiter: Callable[[TokenBuckets], RateLimiter] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.client_key = client_key
        self.buckets = (
            TokenBuckets(config.rate_per_s, config.burst, clock=clock)
            if config.rate_per_s > 0
            else None
        )
        # Limits shared by every instance (Redis), falling back to this process's buckets.
        self.limiter = (
            shared_limiter(self.buckets)
            if shared_limiter is not None and self.buckets is not None
            else None
        )
        self.in_flight = 0
        self.reading = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cfg = self.config
        if scope["type"] != "http" or scope.get("path") in cfg.exempt:
            await self.app(scope, receive, send)
            return
        key = self.client_key(scope) if self.buckets is not None else None
        if key is not None and self.buckets is not None:
            wait = (
                await self.limiter.take(key) if self.limiter is not None else self.buckets.take(key)
            )
            if wait > 0:
                await send_problem(
                    send,
                    429,
                    "too many requests; slow down",
                    "RATE_LIMITED",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
                return
        if _has_body(scope):
            self.reading += 1
            try:
                body = await self._read_body(scope, receive, send)
            finally:
                self.reading -= 1
            if body is None:
                return  # answered (408, 413) or the client went away
            receive = _replay(body, receive)
        limit = cfg.max_concurrency
        if str(scope.get("path", "")).startswith(cfg.reserved_prefixes):
            limit += cfg.reserve
        if cfg.max_concurrency and self.in_flight >= limit:
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

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None once the request is answered (408, 413) or disconnected.

        The deadline is ``body_read_timeout_s`` from the start, extended by one second per
        ``body_min_bytes_per_s`` bytes received: a client trickling bytes is cut off soon after
        the timeout, a large body arriving at a reasonable rate is not."""
        cfg = self.config
        close = {"Connection": "close"}  # the rest of the body is never read
        too_large = f"request body larger than {cfg.max_body} bytes"
        declared = _declared_length(scope)
        if declared is not None and declared > cfg.max_body:
            await send_problem(send, 413, too_large, "PAYLOAD_TOO_LARGE", close)
            return None
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks: list[bytes] = []
        size = 0
        while True:
            allowed = cfg.body_read_timeout_s
            if cfg.body_min_bytes_per_s > 0:
                allowed += size / cfg.body_min_bytes_per_s
            remaining = started + allowed - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    message = await receive()
            except TimeoutError:
                log.warning(
                    "request %s %s: body not received in time (%d bytes in %.1fs)",
                    scope.get("method"),
                    scope.get("path"),
                    size,
                    loop.time() - started,
                )
                await send_problem(
                    send,
                    408,
                    f"the request body was not received in time ({size} bytes in "
                    f"{loop.time() - started:.1f}s; a body must arrive within "
                    f"{cfg.body_read_timeout_s:g}s plus 1s per {cfg.body_min_bytes_per_s:g} "
                    "bytes sent)",
                    "REQUEST_TIMEOUT",
                    close,
                )
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cfg.max_body:
                await send_problem(send, 413, too_large, "PAYLOAD_TOO_LARGE", close)
                return None
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _with_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = ResponseStarted(send)
        try:
            async with asyncio.timeout(self.config.timeout_s):
                await self.app(scope, receive, sent)
        except TimeoutError:
            log.warning(
                "request %s %s timed out after %.1fs",
                scope.get("method"),
                scope.get("path"),
                self.config.timeout_s,
            )
            if not sent.started:
                await send_problem(
                    send, 504, "the request took too long and was cancelled", "GATEWAY_TIMEOUT"
                )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, then waits on the real one
    (for ``http.disconnect``)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


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

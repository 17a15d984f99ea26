"""``UpstreamClient``: one shared ``httpx.AsyncClient`` per upstream, with retries, a breaker
and the request's deadline.

Deadline propagation: the gateway sets :func:`upstream_deadline` around each GraphQL request
(a contextvar holding a monotonic instant). Tasks started for that request (DataLoader
batches, single-flight fills) copy the context, so every upstream call sees the caller's
remaining budget and gives up -- without a socket -- when it is too short.

A call's budget is ``min(total_timeout_s, remaining deadline)``, and it covers every attempt
*and* the backoff sleeps between them. httpx's connect/read timeouts catch a silent server;
the budget (``asyncio.timeout``) also catches one that trickles a body byte by byte.

Retries: only for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS), only for retryable
failures (transport errors, timeouts, 5xx, 429), with exponential backoff and jitter
(``base * 2**attempt``, capped, drawn uniformly in ``[d/2, d]`` so that callers who failed
together do not come back together), and never past the budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from observability import metrics
from observability.tracing import span
from upstream.breaker import CircuitBreaker
from upstream.types import (
    CircuitOpen,
    DeadlineExceeded,
    UpstreamConfig,
    UpstreamError,
    UpstreamPayloadError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamTransportError,
)

log = logging.getLogger("tailor.upstream")
# httpx logs every request at INFO: one line per upstream batch on the request path. Keep it
# quiet unless the operator configured that logger themselves (our own log lines say more).
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# A monotonic instant (time.monotonic) by which the current request must be answered.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "tailor_upstream_deadline", default=None
)


@contextlib.contextmanager
def upstream_deadline(seconds: float | None) -> Iterator[None]:
    """Within this block, upstream calls finish within ``seconds`` from now (None/<=0: none).

    A nested scope can only shorten the deadline, never extend its caller's.
    """
    if seconds is None or seconds <= 0:
        yield
        return
    new = time.monotonic() + seconds
    current = _deadline.get()
    token = _deadline.set(new if current is None else min(new, current))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_deadline() -> float | None:
    """Seconds left before the current request's deadline, or None when there is none."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


@dataclass(slots=True)
class ClientStats:
    calls: int = 0  # calls of ``request`` (one per batch, whatever the retries)
    attempts: int = 0  # HTTP requests actually sent
    retries: int = 0
    failures: int = 0  # calls that ended in an UpstreamError
    fast_failures: int = 0  # calls refused by an open breaker or a spent deadline


class UpstreamClient:
    """``await client.get_json(path, params)`` -> the decoded JSON document, or an UpstreamError.

    ``transport`` is the seam for tests (``httpx.MockTransport``); ``sleep`` and ``rng`` make
    the backoff observable. Created and closed by the app's lifespan (``aclose``).
    """

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.name = config.name
        headers = {"accept": "application/json", "user-agent": "tailor-gateway"}
        if config.token:
            headers["authorization"] = f"Bearer {config.token}"
        self.http = httpx.AsyncClient(
            base_url=config.base_url,
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.connect_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_keepalive,
            ),
        )
        self.breaker = CircuitBreaker(
            config.name,
            failures=config.breaker_failures,
            reset_s=config.breaker_reset_s,
            clock=clock,
        )
        self.stats = ClientStats()
        self._sleep = sleep
        self._rng = rng

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return await self.request("GET", path, params=params)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send, retrying idempotent calls on retryable failures; return the decoded JSON.

        Counted in ``tailor_upstream_calls_total`` by outcome and timed (retries included)."""
        started = time.perf_counter()
        outcome = "error"
        try:
            with span("upstream.call", upstream=self.name, method=method.upper(), path=path):
                data = await self._request(method, path, params, json, idempotent)
            outcome = "ok"
            return data
        except CircuitOpen:
            outcome = "circuit_open"
            raise
        except DeadlineExceeded:
            outcome = "deadline"
            raise
        finally:
            metrics.child(metrics.UPSTREAM_CALLS, self.name, outcome).inc()
            metrics.child(metrics.UPSTREAM_DURATION, self.name).observe(
                time.perf_counter() - started
            )

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json: Any,
        idempotent: bool | None,
    ) -> Any:
        method = method.upper()
        retry = method in IDEMPOTENT if idempotent is None else idempotent
        self.stats.calls += 1
        budget = self.config.total_timeout_s
        left = remaining_deadline()
        if left is not None:
            budget = min(budget, left)
        end = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                return await self._attempt(method, path, params, json, end)
            except UpstreamError as exc:
                if isinstance(exc, CircuitOpen | DeadlineExceeded):
                    self.stats.fast_failures += 1
                delay = self._backoff(attempt)
                if (
                    not retry
                    or not exc.retryable
                    or attempt >= self.config.retries
                    or time.monotonic() + delay >= end
                ):
                    self.stats.failures += 1
                    log.warning(
                        "%s %s %s failed after %d attempt(s): %s",
                        self.name,
                        method,
                        path,
                        attempt + 1,
                        exc,
                    )
                    raise
                attempt += 1
                self.stats.retries += 1
                log.info(
                    "%s %s %s: %s; retry %d in %.0f ms",
                    self.name,
                    method,
                    path,
                    exc,
                    attempt,
                    delay * 1000,
                )
                await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        full = min(self.config.backoff_max_s, self.config.backoff_base_s * (2**attempt))
        return full / 2 + self._rng() * full / 2

    async def _attempt(
        self, method: str, path: str, params: Mapping[str, str] | None, body: Any, end: float
    ) -> Any:
        left = end - time.monotonic()
        if left <= 0.001:
            raise DeadlineExceeded(self.name, f"no time left for {method} {path}")
        if not self.breaker.allow():
            raise CircuitOpen(self.name, "circuit open: not calling")
        self.stats.attempts += 1
        verdict = False
        try:
            try:
                async with asyncio.timeout(left):
                    response = await self.http.request(method, path, params=params, json=body)
            except TimeoutError:
                raise UpstreamTimeout(
                    self.name, f"{method} {path}: no full answer within {left:.3f}s"
                ) from None
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(self.name, f"{method} {path}: {type(exc).__name__}") from None
            except httpx.TransportError as exc:
                raise UpstreamTransportError(
                    self.name, f"{method} {path}: {type(exc).__name__}: {exc}"
                ) from None
            if response.status_code >= 400:
                err = UpstreamStatusError(
                    self.name, response.status_code, f"{method} {path}: HTTP {response.status_code}"
                )
                if not err.retryable:
                    # A 4xx is about our request, not the upstream's health: no breaker verdict.
                    verdict = True
                    self.breaker.record_success()
                raise err
            try:
                data = orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                log.error(
                    "upstream %s: malformed JSON from %s %s (%d bytes): %s",
                    self.name,
                    method,
                    path,
                    len(response.content),
                    exc,
                )
                raise UpstreamPayloadError(self.name, f"{method} {path}: malformed JSON") from None
        except UpstreamError:
            if not verdict:
                verdict = True
                self.breaker.record_failure()
            raise
        finally:
            if not verdict:
                # Cancelled (the caller's own timeout) or succeeded: success is recorded below.
                self.breaker.release()
        self.breaker.record_success()
        return data

    def snapshot(self) -> dict[str, Any]:
        """Breaker state and counters, for ``/readyz``."""
        return {
            **self.breaker.snapshot(),
            "url": self.config.base_url,
            "calls": self.stats.calls,
            "attempts": self.stats.attempts,
            "failures": self.stats.failures,
        }

    async def aclose(self) -> None:
        await self.http.aclose()

"""Contracts of the upstream layer: configuration, breaker states, the exception tree.

Tailor can front a catalog service and a CRM service over HTTP (``gateway/upstream_*.py``).
These names are shared by the client, the breaker, the sources, the sync and the tests.

Exception hierarchy (every failure of an upstream call is an :class:`UpstreamError`; the
resolvers turn it into a field error with ``extensions.code = "UPSTREAM_UNAVAILABLE"``)::

    UpstreamError                 (base: the upstream could not give a usable answer)
    ├── UpstreamTransportError    connect refused/reset, protocol error, stalled or cut body
    ├── UpstreamTimeout           connect/read timeout or the call's total budget spent
    │   └── DeadlineExceeded      the *request's* remaining deadline was too short to try
    ├── UpstreamStatusError       an HTTP status other than 2xx (5xx and 429 are retried)
    ├── UpstreamPayloadError      not JSON, wrong shape, or a row that fails validation
    └── CircuitOpen               the breaker is open: no call was made
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

R = TypeVar("R")


class UpstreamError(Exception):
    """An upstream call failed; ``upstream`` names the service (``catalog``, ``crm``)."""

    retryable = False

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(f"upstream {upstream}: {message}")
        self.upstream = upstream


class UpstreamTransportError(UpstreamError):
    retryable = True


class UpstreamTimeout(UpstreamError):
    retryable = True


class DeadlineExceeded(UpstreamTimeout):
    retryable = False


class UpstreamStatusError(UpstreamError):
    def __init__(self, upstream: str, status: int, message: str) -> None:
        super().__init__(upstream, message)
        self.status = status
        # 5xx and 429 are the upstream's trouble and may pass; other 4xx would fail again.
        self.retryable = status >= 500 or status == 429


class UpstreamPayloadError(UpstreamError):
    pass


class CircuitOpen(UpstreamError):
    pass


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # calls flow; consecutive failures are counted
    OPEN = "open"  # calls fail fast with CircuitOpen until the reset time has passed
    HALF_OPEN = "half_open"  # one probe call is let through; its outcome closes or re-opens


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """How to reach one upstream and how hard to try. Times are seconds, sizes bytes.

    ``field_map``: upstream field name -> Tailor field name (``{"sku": "id", "name": "title"}``),
    applied to every row before validation. ``total_timeout_s`` bounds one call *including*
    its retries and backoff sleeps; the request's deadline (``upstream_deadline``) may cut it
    shorter. ``cache_ttl_s``: answers are fresh this long; ``stale_if_error_s``: after that,
    they are still served for this long when the upstream fails.
    """

    name: str
    base_url: str
    token: str | None = None
    field_map: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0
    total_timeout_s: float = 3.0
    max_connections: int = 32
    max_keepalive: int = 16
    retries: int = 2
    backoff_base_s: float = 0.05
    backoff_max_s: float = 1.0
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    cache_ttl_s: float = 60.0
    stale_if_error_s: float = 3600.0
    cache_max_bytes: int = 16 * 1024 * 1024
    batch_max: int = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    """One page of an upstream listing: validated records, rejected rows, the next cursor."""

    records: list[R]
    rejected: list[tuple[str, str]]  # (row id or "#index", reason)
    next_cursor: str | None

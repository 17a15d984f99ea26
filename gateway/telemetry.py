"""The gateway's request middleware: request id, request metrics, access log.

``TelemetryMiddleware`` (inside the OpenTelemetry ASGI middleware when tracing is on) gives every
HTTP request a request id (the caller's ``X-Request-ID`` when it is sane, else a new one),
answers it in the ``X-Request-ID`` header, puts it on the server span and on every log record of
the request, counts the request by route, GraphQL operation and status, and writes one access
log line (``tailor.access``). The edge layer tells it the operation and the cache decision
through ``RequestInfo`` in the ASGI scope.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import metrics, tracing
from observability.logs import request_id as request_id_var

access_log = logging.getLogger("tailor.access")
SCOPE_KEY = "tailor.telemetry"
_SANE_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")


class RequestInfo:
    """What the layers below tell the middleware about one request."""

    __slots__ = ("cache", "operation", "request_id")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.operation = metrics.ANONYMOUS
        self.cache: str | None = None


def request_info(scope: Scope) -> RequestInfo | None:
    """The request's ``RequestInfo`` (None when the telemetry middleware is not installed)."""
    found: RequestInfo | None = scope.get(SCOPE_KEY)
    return found


def current_request_id() -> str | None:
    return request_id_var.get()


class TelemetryMiddleware:
    """Request id, request metrics and the access log (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, count: bool = True, log_access: bool = True) -> None:
        self.app = app
        self.count = count
        self.log_access = log_access
        # (route, operation, status) -> (counter, histogram) children; bounded like the labels.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _incoming_id(scope) or uuid.uuid4().hex[:16]
        info = RequestInfo(rid)
        scope[SCOPE_KEY] = info
        token = request_id_var.set(rid)
        tracing.set_attribute("tailor.request_id", rid)
        status = 500
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.setdefault("headers", [])
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers = list(headers)
                    headers.append(header)
                    message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            code = str(status)
            if self.count:
                key = (path, info.operation, code)
                pair = self._children.get(key)
                if pair is None:
                    pair = self._children[key] = (
                        metrics.child(metrics.HTTP_REQUESTS, *key),
                        metrics.child(metrics.HTTP_DURATION, *key),
                    )
                pair[0].inc()
                pair[1].observe(elapsed)
            if self.log_access and access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms op=%s cache=%s id=%s",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    info.operation,
                    info.cache or "-",
                    rid,
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "operation": info.operation,
                        "cache": info.cache,
                    },
                )
            request_id_var.reset(token)


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) else None
    return None

"""HTTP helpers shared by every route: request-level problems, bodies, credentials.

A request-level failure is an :class:`HTTPProblem`: a status, a message and a code from the
error table (``resolvers/errors.py``), answered as a GraphQL-shaped JSON body with
``Cache-Control: no-store``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.security.auth import (
    DEFAULT_MAX_TOKEN_TTL_S,
    AuthError,
    AuthUnavailable,
    ErasedAt,
    viewer_from_headers,
)
from gateway.security.jwks import JwksKeys
from observability.logs import request_id as request_id_var
from observability.metrics import GRAPHQL_ERRORS, child
from resolvers.context import Viewer
from resolvers.errors import ERROR_CODES, domain_code

JSON_TYPE = "application/json"
log = logging.getLogger("tailor.http")


class HTTPProblem(Exception):
    """A request-level failure answered without executing (status + GraphQL-shaped body)."""

    def __init__(
        self, status: int, message: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


def problem_from_domain(exc: Exception, headers: dict[str, str] | None = None) -> HTTPProblem:
    """The problem for a domain exception of the error table; anything else is re-raised."""
    code = domain_code(exc)
    if code is None:
        raise exc
    return HTTPProblem(ERROR_CODES[code], str(exc), code, headers)


def json_body(body: bytes) -> Any:
    """Decode a JSON request body; malformed JSON is a 400 problem."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(
            400, f"the request body is not valid JSON: {exc}", "BAD_REQUEST"
        ) from None


async def read_body(request: Request, max_body: int) -> bytes:
    """The whole body, refused with 413 as soon as it (declared or streamed) passes ``max_body``."""
    declared = request.headers.get("content-length")
    # The length first: int() refuses more than 4,300 digits.
    if (
        declared is not None
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > max_body)
    ):
        raise HTTPProblem(413, f"request body larger than {max_body} bytes", "PAYLOAD_TOO_LARGE")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise HTTPProblem(
                413, f"request body larger than {max_body} bytes", "PAYLOAD_TOO_LARGE"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def authenticate(
    authorization: str | None,
    anonymous_id: str | None,
    *,
    secret: str,
    issuer: str | None,
    audience: str | None,
    max_ttl_s: float | None = DEFAULT_MAX_TOKEN_TTL_S,
    erased_at: ErasedAt | None = None,
    keys: JwksKeys | None = None,
) -> Viewer:
    """The caller from the request's credentials; bad credentials are a 401 problem.

    ``max_ttl_s``: the longest token lifetime accepted (the ``max_token_ttl_s`` setting);
    ``erased_at(user_id)``: the user's latest erasure time (``PrivacyService.erased_at``), so
    tokens issued before it are refused."""
    try:
        return viewer_from_headers(
            authorization,
            anonymous_id,
            secret=secret,
            issuer=issuer,
            audience=audience,
            max_ttl_s=max_ttl_s,
            erased_at=erased_at,
            keys=keys,
        )
    except AuthUnavailable as exc:
        raise HTTPProblem(503, str(exc), "SERVICE_UNAVAILABLE", {"Retry-After": "5"}) from None
    except AuthError as exc:
        raise HTTPProblem(
            401, str(exc), "UNAUTHENTICATED", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


def problem_response(p: HTTPProblem, media: str = JSON_TYPE) -> Response:
    child(GRAPHQL_ERRORS, p.code).inc()
    body = {"errors": [{"message": p.message, "extensions": {"code": p.code}}]}
    headers = {"Cache-Control": "no-store", **p.headers}
    return Response(orjson.dumps(body), status_code=p.status, media_type=media, headers=headers)


class ResponseStarted:
    """An ASGI ``send`` that remembers whether the response has started (after that, an error
    can no longer be answered with a status of its own)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class ErrorMiddleware:
    """The last resort (outermost of the app's middleware): an exception that escapes a route
    is logged with a request id and answered 500 ``INTERNAL_SERVER_ERROR`` in JSON, so the
    server sees a complete answer and the keep-alive connection stays usable. (Left to escape,
    Starlette answers a text 500 and re-raises, and uvicorn then drops the connection without
    ``Connection: close``: the client's next request on it fails.) If the answer had already
    started, nothing can be said any more: the exception goes on and the connection closes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = ResponseStarted(send)
        try:
            await self.app(scope, receive, sent)
        except Exception as exc:
            if sent.started:
                raise
            request_id = request_id_var.get() or uuid.uuid4().hex[:16]
            log.error(
                "unexpected error %s on %s %s",
                request_id,
                scope.get("method"),
                scope.get("path"),
                exc_info=exc,
            )
            body = orjson.dumps(
                {
                    "errors": [
                        {
                            "message": f"Internal server error (request id {request_id})",
                            "extensions": {
                                "code": "INTERNAL_SERVER_ERROR",
                                "requestId": request_id,
                            },
                        }
                    ]
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", JSON_TYPE.encode()),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

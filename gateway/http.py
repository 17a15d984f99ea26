"""HTTP helpers shared by every route: request-level problems, bodies, credentials.

A request-level failure is an :class:`HTTPProblem`: a status, a message and a code from the
error table (``resolvers/errors.py``), answered as a GraphQL-shaped JSON body with
``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.security.auth import AuthError, viewer_from_headers
from resolvers.context import Viewer
from resolvers.errors import ERROR_CODES, domain_code

JSON_TYPE = "application/json"


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
    if declared is not None and declared.isdigit() and int(declared) > max_body:
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
) -> Viewer:
    """The caller from the request's credentials; bad credentials are a 401 problem."""
    try:
        return viewer_from_headers(
            authorization, anonymous_id, secret=secret, issuer=issuer, audience=audience
        )
    except AuthError as exc:
        raise HTTPProblem(
            401, str(exc), "UNAUTHENTICATED", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None


def problem_response(p: HTTPProblem, media: str = JSON_TYPE) -> Response:
    body = {"errors": [{"message": p.message, "extensions": {"code": p.code}}]}
    headers = {"Cache-Control": "no-store", **p.headers}
    return Response(orjson.dumps(body), status_code=p.status, media_type=media, headers=headers)

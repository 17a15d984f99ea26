"""The one table that maps errors to GraphQL codes and HTTP statuses.

``ERROR_CODES`` lists every ``extensions.code`` Tailor answers with and the HTTP status the
request-level form of that error takes (``gateway/http.py`` answers REST and request-level
GraphQL failures from it). ``DOMAIN_ERRORS`` maps the domain exceptions a resolver or a route
may meet to their code: :func:`from_domain` turns one into a GraphQL error, and
``gateway.http.problem_from_domain`` into an HTTP problem.
"""

from __future__ import annotations

from graphql import GraphQLError

from profiles.types import BatchTooLarge, IngestUnavailable

# code -> HTTP status of the request-level form of the error
ERROR_CODES: dict[str, int] = {
    "BAD_REQUEST": 400,
    "BAD_USER_INPUT": 400,
    "GRAPHQL_PARSE_FAILED": 400,
    "GRAPHQL_VALIDATION_FAILED": 400,
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "NOT_ACCEPTABLE": 406,
    "REQUEST_TIMEOUT": 408,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "RATE_LIMITED": 429,
    "INTERNAL_SERVER_ERROR": 500,
    "UPSTREAM_UNAVAILABLE": 502,
    "SERVICE_UNAVAILABLE": 503,
    "GATEWAY_TIMEOUT": 504,
}

# domain exception -> code (and through ERROR_CODES, its HTTP status)
DOMAIN_ERRORS: dict[type[Exception], str] = {
    BatchTooLarge: "PAYLOAD_TOO_LARGE",
    IngestUnavailable: "SERVICE_UNAVAILABLE",
}


def domain_code(exc: BaseException) -> str | None:
    """The code of a domain exception (by its class or a base class), or None."""
    for cls in type(exc).__mro__:
        code = DOMAIN_ERRORS.get(cls)
        if code is not None:
            return code
    return None


class TailorGraphQLError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message, extensions={"code": self.code})


class Forbidden(TailorGraphQLError):
    code = "FORBIDDEN"


class Unauthenticated(TailorGraphQLError):
    code = "UNAUTHENTICATED"


class BadUserInput(TailorGraphQLError):
    code = "BAD_USER_INPUT"


class ServiceUnavailable(TailorGraphQLError):
    code = "SERVICE_UNAVAILABLE"


class UpstreamUnavailable(TailorGraphQLError):
    """A field whose upstream service failed (and had no answer within stale-if-error)."""

    code = "UPSTREAM_UNAVAILABLE"


def from_domain(exc: Exception) -> TailorGraphQLError:
    """The GraphQL error for a domain exception of the table; anything else is re-raised."""
    code = domain_code(exc)
    if code is None:
        raise exc
    return TailorGraphQLError(str(exc), code)

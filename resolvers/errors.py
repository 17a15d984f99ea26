"""The one place where domain exceptions become GraphQL errors with ``extensions.code``.

Codes: ``FORBIDDEN`` (authenticated but not allowed), ``UNAUTHENTICATED`` (needs a user),
``BAD_USER_INPUT`` (an argument is invalid), ``NOT_FOUND``, ``PAYLOAD_TOO_LARGE``,
``SERVICE_UNAVAILABLE``. The HTTP layer maps request-level failures to status codes in
``gateway/errors.py``.
"""

from __future__ import annotations

from graphql import GraphQLError

from profiles.types import BatchTooLarge, IngestUnavailable


class TailorGraphQLError(GraphQLError):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": self.code})


class Forbidden(TailorGraphQLError):
    code = "FORBIDDEN"


class Unauthenticated(TailorGraphQLError):
    code = "UNAUTHENTICATED"


class BadUserInput(TailorGraphQLError):
    code = "BAD_USER_INPUT"


class PayloadTooLarge(TailorGraphQLError):
    code = "PAYLOAD_TOO_LARGE"


class ServiceUnavailable(TailorGraphQLError):
    code = "SERVICE_UNAVAILABLE"


def from_domain(exc: Exception) -> TailorGraphQLError:
    if isinstance(exc, BatchTooLarge):
        return PayloadTooLarge(str(exc))
    if isinstance(exc, IngestUnavailable):
        return ServiceUnavailable(str(exc))
    raise exc

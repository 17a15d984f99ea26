"""Contracts of the GraphQL endpoint: its parameters and the two seams around execution.

The endpoint (``endpoint.py``) is an :class:`Executor`; a :class:`ResponseLayer` (the edge layer
in ``gateway/edge/``) may sit between the request and execution. The endpoint knows only this
protocol, never the edge package, so control runs endpoint -> layer -> executor without a
circle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import OperationType
from starlette.requests import Request
from starlette.responses import Response

from resolvers.context import TailorContext, Viewer


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    """One operation as the client sent it (``query`` is empty for a hash-only APQ request)."""

    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


class Executor(Protocol):
    """Runs one operation: what a response layer calls back into."""

    def operation_type(self, params: GraphQLParams) -> OperationType | None:
        """The selected operation's type; ``None`` if the document is invalid."""
        ...

    async def run(
        self, params: GraphQLParams, context: TailorContext, method: str, media: str
    ) -> tuple[int, bytes]:
        """Execute; returns (HTTP status, encoded GraphQL response body)."""
        ...


class ResponseLayer(Protocol):
    """Turns one request's operation into a response (caching, APQ, cache headers).

    ``read_params(request, max_body)``: the request's operation(s), possibly memoized.
    ``respond(executor, request, params, viewer, media_type)``: the HTTP response, executing
    through ``executor`` when nothing cached answers."""

    @property
    def read_params(
        self,
    ) -> Callable[[Request, int], Awaitable[GraphQLParams | list[GraphQLParams]]]: ...

    @property
    def respond(
        self,
    ) -> Callable[[Executor, Request, GraphQLParams, Viewer, str], Awaitable[Response]]: ...

"""GraphQL over HTTP (the GraphQL-over-HTTP specification draft), on Starlette.

- POST with ``Content-Type: application/json`` (else 415); GET with ``query``, ``variables``,
  ``operationName`` and ``extensions`` in the query string. Mutations over GET: 405 with
  ``Allow: POST``. Other methods: 405 with ``Allow: GET, POST``.
- ``Accept`` negotiation: ``application/graphql-response+json`` (preferred by the spec) or
  ``application/json``; a request that accepts neither gets 406. No ``Accept`` means JSON.
- Status codes: a request that is not well-formed (bad JSON, no ``query``, wrong parameter types)
  is 400. With ``application/graphql-response+json``, parse and validation failures and variable
  coercion failures are 400 too; with ``application/json`` they are 200 (legacy watershed), as
  the spec asks. Execution (field) errors are 200 with partial data.
- Bodies are JSON encoded with orjson. Unexpected resolver errors are masked in production mode.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NamedTuple

import orjson
import strawberry
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    Token,
    execute,
    get_operation_ast,
    specified_rules,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.pyutils import is_awaitable
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway.graphql.limits import (
    NoIntrospectionRule,
    OperationLimits,
    is_limit_error,
    measure,
    parse_limited,
)
from gateway.graphql.params import (
    GRAPHQL_RESPONSE,
    PartLimits,
    check_parts,
    negotiate,
    read_params,
)
from gateway.graphql.types import GraphQLParams, ResponseLayer
from gateway.http import HTTPProblem, problem_response
from observability.metrics import GRAPHQL_ERRORS, child
from observability.tracing import span
from resolvers.context import Services, TailorContext, Viewer
from resolvers.errors import TailorGraphQLError

log = logging.getLogger("tailor.graphql")
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")

# The parse/validation cache is bounded in (estimated) bytes, not entries: its keys are
# client-written query texts. A parsed document keeps its tokens (locations), ~600 bytes each.
DOCUMENT_CACHE_BYTES = 16 << 20
_TOKEN_BYTES = 600
_ENTRY_BYTES = 2048
# Documents longer than this (characters) are parsed and validated in a worker thread, so a
# long comment or string does not hold the event loop (~0.1 ms per kB to lex).
OFFLOOP_PARSE_CHARS = 16_384


class _Parsed(NamedTuple):
    document: DocumentNode | None
    errors: list[GraphQLError]
    nbytes: int


# The document this request prepared off the loop: found even if the cache dropped it since.
_prepared: ContextVar[tuple[str, _Parsed] | None] = ContextVar("tailor_prepared", default=None)


def _estimate(query: str, document: DocumentNode | None, errors: list[GraphQLError]) -> int:
    tokens = 0
    if document is not None and document.loc is not None:
        token: Token | None = document.loc.start_token
        while token is not None:
            tokens += 1
            token = token.next
    # The key and the token values (comments, strings) each hold the text once.
    return 2 * sys.getsizeof(query) + _TOKEN_BYTES * tokens + 512 * len(errors) + _ENTRY_BYTES


class GraphQLEndpoint:
    """Parses (with a document cache), validates, executes, and encodes GraphQL requests."""

    def __init__(
        self,
        schema: strawberry.Schema,
        services: Services,
        *,
        max_body: int,
        production: bool,
        graphiql: bool,
        authenticate: Callable[[str | None, str | None], Viewer],
        limits: OperationLimits | None = None,
        introspection: bool = True,
        batch_max: int = 0,
        layer: ResponseLayer | None = None,
        parts: PartLimits | None = None,
        document_cache_bytes: int = DOCUMENT_CACHE_BYTES,
    ) -> None:
        """``limits``: operation limits (``limits.py``), None = off. ``batch_max``: GraphQL
        batching, off at 0. ``layer``: the response layer (edge caching, APQ, cache headers)
        between the request and execution; None executes every request directly.
        ``parts``: size/depth bounds of the query text and variables (``params.PartLimits``).
        ``document_cache_bytes``: budget of the parse/validation cache. ``authenticate(
        authorization, anonymous_id)``: the caller (an ``HTTPProblem`` 401 for bad credentials)."""
        self.schema = schema._schema
        self.services = services
        self.max_body = max_body
        self.batch_max = batch_max
        self.production = production
        self.graphiql = graphiql
        self.authenticate = authenticate
        self.layer = layer
        self.limits = limits
        self.introspection = introspection
        self._rules: list[Any] = list(specified_rules)
        if not introspection:
            self._rules.append(NoIntrospectionRule)
        self.parts = parts or PartLimits()
        self._documents: LRUCache[str, _Parsed] = LRUCache(
            document_cache_bytes, getsizeof=lambda parsed: parsed.nbytes
        )

    def _parse(self, query: str) -> _Parsed:
        """Parse and validate (pure: may run in a worker thread)."""
        with span("graphql.parse_validate", chars=len(query)):
            return self._parse_validate(query)

    def _parse_validate(self, query: str) -> _Parsed:
        try:
            doc = parse_limited(query, self.limits)
        except GraphQLError as exc:
            return _Parsed(None, [exc], _estimate(query, None, [exc]))
        # Limits first: the standard rules are far costlier on abusive documents.
        errors: list[GraphQLError] = []
        if self.limits is not None:
            errors.extend(measure(self.schema, doc, self.limits))
        if not errors:
            errors = list(validate(self.schema, doc, self._rules, hide_suggestions=self.production))
        return _Parsed(doc, errors, _estimate(query, doc, errors))

    def _remember(self, query: str, parsed: _Parsed) -> None:
        if parsed.nbytes <= self._documents.maxsize:
            self._documents[query] = parsed

    def _document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        cached = self._documents.get(query)
        if cached is None:
            prepared = _prepared.get()
            if prepared is not None and prepared[0] == query:
                cached = prepared[1]
            else:
                cached = self._parse(query)
                self._remember(query, cached)
        return cached.document, cached.errors

    async def prepare(self, params: GraphQLParams) -> None:
        """Check the operation's parts against ``parts`` (``HTTPProblem``), and parse a long
        document in a worker thread so that later (synchronous) lookups find it."""
        check_parts(params, self.parts)
        query = params.query
        if len(query) <= OFFLOOP_PARSE_CHARS or query in self._documents:
            return
        parsed = await asyncio.to_thread(self._parse, query)
        self._remember(query, parsed)
        _prepared.set((query, parsed))

    def operation_type(self, params: GraphQLParams) -> OperationType | None:
        """The selected operation's type; ``None`` if the document is invalid or has no such op."""
        document, errors = self._document(params.query)
        if errors or document is None:
            return None
        operation = get_operation_ast(document, params.operation_name)
        return None if operation is None else operation.operation

    async def handle(self, request: Request) -> Response:
        try:
            if request.method not in ("GET", "POST"):
                raise HTTPProblem(
                    405,
                    f"method {request.method} not allowed",
                    "METHOD_NOT_ALLOWED",
                    {"Allow": "GET, POST"},
                )
            if (
                request.method == "GET"
                and self.graphiql
                # Accept first: parsing the query string costs more than a cached answer.
                and "text/html" in request.headers.get("accept", "")
                and "query" not in request.query_params
            ):
                return HTMLResponse(graphiql_html())
            media = negotiate(request.headers.get("accept"))
        except HTTPProblem as p:
            return problem_response(p)
        try:
            # The edge layer memoizes parsed GET URLs: a cached GET must not pay for parsing.
            params = await (read_params if self.layer is None else self.layer.read_params)(
                request, self.max_body
            )
            viewer = self.authenticate(
                request.headers.get("authorization"), request.headers.get("x-anonymous-id")
            )
            if isinstance(params, list):
                return await self.run_batch(params, viewer, request, media)
            await self.prepare(params)
            if self.layer is not None:
                return await self.layer.respond(self, request, params, viewer, media)
            status, body = await self.run(
                params, TailorContext(self.services, viewer, request), request.method, media
            )
        except HTTPProblem as p:
            return problem_response(p, media)
        return Response(
            body, status_code=status, media_type=media, headers={"Cache-Control": "no-store"}
        )

    async def run_batch(
        self, batch: list[GraphQLParams], viewer: Viewer, request: Request, media: str
    ) -> Response:
        """A batch (a JSON array of operations): off unless ``graphql_batch_max`` > 0, and bounded.

        Operations run one after another, each with its own limits; the answer is the array of
        their results. Batches bypass the response cache and are never cacheable.
        """
        if self.batch_max <= 0:
            raise HTTPProblem(
                400, "batched requests are disabled (TAILOR_GRAPHQL_BATCH_MAX)", "BAD_REQUEST"
            )
        if len(batch) > self.batch_max:
            raise HTTPProblem(
                400,
                f"a batch of {len(batch)} operations; the limit is {self.batch_max}",
                "BAD_REQUEST",
            )
        for params in batch:
            check_parts(params, self.parts)
        bodies = []
        for params in batch:
            await self.prepare(params)
            context = TailorContext(self.services, viewer, request)
            _status, body = await self.run(params, context, request.method, media)
            bodies.append(body)
        return Response(
            b"[" + b",".join(bodies) + b"]",
            media_type=media,
            headers={"Cache-Control": "no-store", "X-Cache": "BYPASS"},
        )

    async def run(
        self, params: GraphQLParams, context: TailorContext, method: str, media: str
    ) -> tuple[int, bytes]:
        """Execute one operation; returns (status, encoded body)."""
        strict = media == GRAPHQL_RESPONSE
        document, errors = self._document(params.query)
        if errors or document is None:
            # A refused limit is a request rejection, 400 whatever the media type.
            rejected = strict or any(is_limit_error(e) for e in errors)
            return (400 if rejected else 200), self.encode(ExecutionResult(None, errors))
        operation = get_operation_ast(document, params.operation_name)
        if operation is None:
            msg = (
                f"unknown operation named {params.operation_name!r}"
                if params.operation_name
                else "the document has several operations: pass operationName"
            )
            raise HTTPProblem(400 if strict else 200, msg, "BAD_REQUEST")
        if method == "GET" and operation.operation != OperationType.QUERY:
            raise HTTPProblem(
                405,
                f"{operation.operation.value} operations are not allowed over GET; use POST",
                "METHOD_NOT_ALLOWED",
                {"Allow": "POST"},
            )
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or [], params.variables or {}
        )
        if isinstance(coerced, list):
            return (400 if strict else 200), self.encode(ExecutionResult(None, coerced))
        with span("graphql.execute", operation=operation.operation.value):
            result = execute(
                self.schema,
                document,
                context_value=context,
                variable_values=params.variables,
                operation_name=params.operation_name,
                # The edge layer's cache-hint recorder (resolvers/cache_control.py), if installed.
                middleware=_cache_middleware(context),
            )
            if is_awaitable(result):
                result = await result
        assert isinstance(result, ExecutionResult)
        return 200, self.encode(result)

    def encode(self, result: ExecutionResult) -> bytes:
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [self._format_error(e) for e in result.errors]
            for error in out["errors"]:
                child(GRAPHQL_ERRORS, _code_of(error)).inc()
        if result.data is not None or result.errors is None or _executed(result):
            out["data"] = result.data
        return orjson.dumps(out)

    def _format_error(self, error: GraphQLError) -> dict[str, Any]:
        original = error.original_error
        if original is not None and not isinstance(original, GraphQLError | TailorGraphQLError):
            request_id = uuid.uuid4().hex[:16]
            log.error("unexpected error %s at %s", request_id, error.path, exc_info=original)
            if self.production:
                return {
                    "message": f"Internal server error (request id {request_id})",
                    "path": error.path,
                    "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
                }
            unexpected: dict[str, Any] = dict(error.formatted)
            unexpected["extensions"] = {
                **(unexpected.get("extensions") or {}),
                "code": "INTERNAL_SERVER_ERROR",
            }
            return unexpected
        formatted: dict[str, Any] = dict(error.formatted)
        if self.production and "Did you mean" in formatted["message"]:
            # Suggestions reveal schema names that introspection-off is meant to hide.
            formatted["message"] = _SUGGESTION.sub("", formatted["message"])
        if "extensions" not in formatted or "code" not in (formatted.get("extensions") or {}):
            code = "GRAPHQL_VALIDATION_FAILED" if error.path is None else "INTERNAL_SERVER_ERROR"
            if error.path is None and "Syntax Error" in error.message:
                code = "GRAPHQL_PARSE_FAILED"
            formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
        return formatted


def _code_of(error: dict[str, Any]) -> str:
    code = (error.get("extensions") or {}).get("code")
    # Codes come from the error table; anything else is one bounded label.
    return code if isinstance(code, str) and code.isupper() and len(code) <= 64 else "OTHER"


def _cache_middleware(context: TailorContext) -> list[Any] | None:
    recorder = getattr(context, "cache_control", None)
    return None if recorder is None else [recorder]


def _executed(result: ExecutionResult) -> bool:
    # Execution errors carry a path; request errors (parse/validation/coercion) do not.
    return any(e.path is not None for e in result.errors or [])


def graphiql_html() -> str:
    from strawberry.http.ides import get_graphql_ide_html

    return get_graphql_ide_html("graphiql")

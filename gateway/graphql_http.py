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

import logging
import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import strawberry
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    OperationType,
    execute,
    get_operation_ast,
    specified_rules,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.pyutils import is_awaitable
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway.auth import AuthError, viewer_from_headers
from gateway.limits import (
    NoIntrospectionRule,
    OperationLimits,
    is_limit_error,
    measure,
    parse_limited,
)
from resolvers.context import Services, TailorContext, Viewer
from resolvers.errors import TailorGraphQLError

if TYPE_CHECKING:
    from gateway.edge import EdgeLayer

log = logging.getLogger("tailor.graphql")
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_TYPE = "application/json"


class HTTPProblem(Exception):
    """A request-level failure answered without executing (status + GraphQL-shaped body)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class GraphQLParams:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None


def negotiate(accept: str | None) -> str:
    """Pick the response media type from an Accept header (q-values honoured)."""
    if not accept:
        return JSON_TYPE
    best, best_q = None, 0.0
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if media in (GRAPHQL_RESPONSE, JSON_TYPE, "application/*", "*/*"):
            chosen = GRAPHQL_RESPONSE if media == GRAPHQL_RESPONSE else JSON_TYPE
            # Ties go to the earlier entry; graphql-response+json wins a tie against wildcards.
            if q > best_q or (
                q == best_q and chosen == GRAPHQL_RESPONSE and media == GRAPHQL_RESPONSE and i == 0
            ):
                best, best_q = chosen, q
    if best is None or best_q <= 0:
        raise HTTPProblem(
            406,
            f"cannot answer with any of the accepted media types; use {GRAPHQL_RESPONSE} or {JSON_TYPE}",
            "NOT_ACCEPTABLE",
        )
    return best


def _json_param(raw: str | None, name: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HTTPProblem(400, f"`{name}` must be a JSON object", "BAD_REQUEST") from None
    if value is not None and not isinstance(value, dict):
        raise HTTPProblem(400, f"`{name}` must be a JSON object", "BAD_REQUEST")
    return value


def params_from_mapping(data: Any) -> GraphQLParams:
    if not isinstance(data, dict):
        raise HTTPProblem(400, "the request body must be a JSON object", "BAD_REQUEST")
    query = data.get("query")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise HTTPProblem(400, "`extensions` must be an object", "BAD_REQUEST")
    if query is None or query == "":
        # An APQ request may carry only the hash; the edge layer resolves it to the text.
        if not (isinstance(extensions, dict) and "persistedQuery" in extensions):
            raise HTTPProblem(400, "`query` is required", "BAD_REQUEST")
        query = ""
    if not isinstance(query, str):
        raise HTTPProblem(400, "`query` must be a string", "BAD_REQUEST")
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise HTTPProblem(400, "`variables` must be an object", "BAD_REQUEST")
    op = data.get("operationName")
    if op is not None and not isinstance(op, str):
        raise HTTPProblem(400, "`operationName` must be a string", "BAD_REQUEST")
    return GraphQLParams(query, variables, op, extensions)


async def read_params(request: Request, max_body: int) -> GraphQLParams | list[GraphQLParams]:
    """The request's operation, or a list of them for a batch (a JSON array body)."""
    if request.method == "GET":
        qp = request.query_params
        return params_from_mapping(
            {
                "query": qp.get("query"),
                "variables": _json_param(qp.get("variables"), "variables"),
                "operationName": qp.get("operationName") or None,
                "extensions": _json_param(qp.get("extensions"), "extensions"),
            }
        )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != JSON_TYPE:
        raise HTTPProblem(
            415,
            f"unsupported Content-Type {ctype or '(none)'!r}; POST requests must use {JSON_TYPE}",
            "UNSUPPORTED_MEDIA_TYPE",
        )
    data = json_body(await read_body(request, max_body))
    if isinstance(data, list):
        if not data:
            raise HTTPProblem(400, "an empty batch", "BAD_REQUEST")
        return [params_from_mapping(item) for item in data]
    return params_from_mapping(data)


def json_body(body: bytes) -> Any:
    """Decode a JSON request body; malformed JSON is a 400 problem."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(
            400, f"the request body is not valid JSON: {exc}", "BAD_REQUEST"
        ) from None


async def read_body(request: Request, max_body: int) -> bytes:
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


class GraphQLEndpoint:
    """Parses (with a document cache), validates, executes, and encodes GraphQL requests."""

    # Edge caching, APQ and HTTP cache headers (gateway/edge.py); set by the app's lifespan.
    edge: EdgeLayer | None = None

    def __init__(
        self,
        schema: strawberry.Schema,
        services: Services,
        *,
        max_body: int,
        production: bool,
        graphiql: bool,
        secret: str,
        issuer: str | None,
        audience: str | None,
    ) -> None:
        self.schema = schema._schema
        self.services = services
        self.max_body = max_body
        self.batch_max = 0  # GraphQL batching: off unless configured (see run_batch)
        self.production = production
        self.graphiql = graphiql
        self.auth = (secret, issuer, audience)
        self._documents: LRUCache[str, tuple[DocumentNode | None, list[GraphQLError]]] = LRUCache(
            2048
        )

    # Operation limits (gateway/limits.py); None = off. Set by the app via configure_limits.
    limits: OperationLimits | None = None
    introspection: bool = True
    _rules: list[Any] | None = None

    def configure_limits(self, limits: OperationLimits | None, *, introspection: bool) -> None:
        self.limits = limits
        self.introspection = introspection
        rules = list(specified_rules)
        if not introspection:
            rules.append(NoIntrospectionRule)
        self._rules = rules
        self._documents.clear()

    def _document(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        cached = self._documents.get(query)
        if cached is None:
            try:
                doc = parse_limited(query, self.limits)
            except GraphQLError as exc:
                cached = (None, [exc])
            else:
                # Limits first: the standard rules are far costlier on abusive documents.
                errors: list[GraphQLError] = []
                if self.limits is not None:
                    errors.extend(measure(self.schema, doc, self.limits))
                if not errors:
                    errors = list(
                        validate(self.schema, doc, self._rules, hide_suggestions=self.production)
                    )
                cached = (doc, errors)
            self._documents[query] = cached
        return cached

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
            params = await (read_params if self.edge is None else self.edge.read_params)(
                request, self.max_body
            )
            secret, issuer, audience = self.auth
            viewer = authenticate(
                request.headers.get("authorization"),
                request.headers.get("x-anonymous-id"),
                secret=secret,
                issuer=issuer,
                audience=audience,
            )
            if isinstance(params, list):
                return await self.run_batch(params, viewer, request, media)
            if self.edge is not None:
                return await self.edge.respond(self, request, params, viewer, media)
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
        bodies = []
        for params in batch:
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


def _cache_middleware(context: TailorContext) -> list[Any] | None:
    recorder = getattr(context, "cache_control", None)
    return None if recorder is None else [recorder]


def _executed(result: ExecutionResult) -> bool:
    # Execution errors carry a path; request errors (parse/validation/coercion) do not.
    return any(e.path is not None for e in result.errors or [])


def graphiql_html() -> str:
    from strawberry.http.ides import get_graphql_ide_html

    return get_graphql_ide_html("graphiql")

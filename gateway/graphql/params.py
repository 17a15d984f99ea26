"""Reading a GraphQL-over-HTTP request: media-type negotiation and the operation's parameters
(GET query string or a JSON POST body; a JSON array is a batch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request

from gateway.graphql.types import GraphQLParams
from gateway.http import JSON_TYPE, HTTPProblem, json_body, read_body

GRAPHQL_RESPONSE = "application/graphql-response+json"


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


@dataclass(frozen=True, slots=True)
class PartLimits:
    """Bounds on the parts of one operation, checked before the document is parsed:
    ``max_query_bytes`` (UTF-8 bytes of the query text) and ``max_variables_bytes`` (bytes of
    the variables as compact JSON), both 413. Variables nested deeper than
    :data:`MAX_VARIABLES_DEPTH` levels are a 400."""

    max_query_bytes: int = 100_000
    max_variables_bytes: int = 256_000


# orjson refuses to encode deeper values (the edge layer keys the response cache on the
# variables' JSON), and no input type of the schema nests anywhere near this.
MAX_VARIABLES_DEPTH = 254


def check_parts(params: GraphQLParams, limits: PartLimits) -> None:
    """Refuse an operation whose query text or variables pass ``limits`` (``HTTPProblem``)."""
    query = params.query
    # len() counts characters, at most 4 UTF-8 bytes each: encode only when it may matter.
    if len(query) * 4 > limits.max_query_bytes:
        size = len(query.encode("utf-8", "surrogatepass"))
        if size > limits.max_query_bytes:
            raise HTTPProblem(
                413,
                f"the query is {size} bytes; the limit is {limits.max_query_bytes} "
                "(TAILOR_MAX_QUERY_BYTES)",
                "PAYLOAD_TOO_LARGE",
            )
    variables = params.variables
    if not variables:
        return
    try:
        # In C: one pass measures the size and finds nesting past orjson's limit.
        size = len(orjson.dumps(variables))
    except TypeError:
        raise HTTPProblem(
            400,
            f"`variables` are nested more than {MAX_VARIABLES_DEPTH} levels deep",
            "BAD_REQUEST",
        ) from None
    if size > limits.max_variables_bytes:
        raise HTTPProblem(
            413,
            f"`variables` are {size} bytes of JSON; the limit is {limits.max_variables_bytes} "
            "(TAILOR_MAX_VARIABLES_BYTES)",
            "PAYLOAD_TOO_LARGE",
        )


def _json_param(raw: str | None, name: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(
            400, f"`{name}` must be a JSON object; it is not valid JSON: {exc}", "BAD_REQUEST"
        ) from None
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

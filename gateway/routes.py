"""The HTTP routes besides ``/graphql``: events, health, readiness, purge and a ping baseline.

Each handler reads the running app's :class:`Runtime` (built by the lifespan) from
``request.app.state.runtime``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.edge.layer import EdgeLayer
from gateway.edge.purge import handle_purge
from gateway.fleet import StreamRuntime
from gateway.graphql.endpoint import GraphQLEndpoint
from gateway.http import (
    HTTPProblem,
    json_body,
    problem_from_domain,
    problem_response,
    read_body,
)
from gateway.security.apikeys import ApiKeyRegistry
from gateway.settings import Settings
from profiles.types import BatchTooLarge, IngestUnavailable
from resolvers.context import Services, Viewer
from upstream.service import Upstreams

if TYPE_CHECKING:
    from cache.redis_tier import RedisTier

NO_STORE = {"Cache-Control": "no-store"}
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


@dataclass
class Runtime:
    """What a running app owns (built and closed by its lifespan)."""

    settings: Settings
    services: Services
    graphql: GraphQLEndpoint
    edge: EdgeLayer
    apikeys: ApiKeyRegistry
    upstreams: Upstreams | None = None
    redis: RedisTier | None = None  # the shared tier (redis_url), None when embedded
    stream: StreamRuntime | None = None  # the event stream's consumer and feed (fleet shape)

    def auth(self, authorization: str | None, anonymous_id: str | None) -> Viewer:
        return self.graphql.authenticate(authorization, anonymous_id)


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def _json(doc: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(doc), status_code=status, media_type="application/json", headers=NO_STORE
    )


async def events(request: Request) -> Response:
    """``POST /v1/events``: a JSON array, ``{"batch": [...]}``, or NDJSON."""
    rt = runtime(request)
    try:
        if request.method != "POST":
            raise HTTPProblem(405, "use POST", "METHOD_NOT_ALLOWED", {"Allow": "POST"})
        viewer = rt.auth(
            request.headers.get("authorization"), request.headers.get("x-anonymous-id")
        )
        denied = viewer.write_denied("POST /v1/events")
        if denied is not None:
            raise HTTPProblem(403, denied, "FORBIDDEN")
        raws = parse_event_body(
            request.headers.get("content-type", ""),
            await read_body(request, rt.settings.max_body_bytes),
        )
        # The ingestion drops the raw events once validated; this frame does not keep them
        # alive while the write is awaited.
        pending = rt.services.ingest.ingest(viewer.prepare_events(raws), viewer.event_check)
        del raws
        try:
            result = await pending
        except BatchTooLarge as exc:
            raise problem_from_domain(exc) from None
        except IngestUnavailable as exc:
            raise problem_from_domain(exc, {"Retry-After": "1"}) from None
        # With a shared tier: the purge of these users' answers has reached the fleet's
        # channel before they are answered (no-op without one).
        await rt.edge.responses.flush_shared()
    except HTTPProblem as p:
        return problem_response(p)
    return _json(result.as_json())


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def readyz(request: Request) -> Response:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:
        return _json({"status": "not ready"}, 503)
    services = rt.services
    # With items in the catalog, similarity and search need the index loaded...
    index_ok = services.content.ready or len(services.catalog) == 0
    # ...unless this gateway does not build it: then it serves without content similarity and
    # search until the process that builds one stores it (the model poller swaps it in).
    warming = [] if index_ok or rt.settings.index_build_on_start else ["item_index"]
    checks = {
        "store": services.store.ping(),
        "ingest_writer": services.ingest.running,
        "item_index": index_ok or bool(warming),
    }
    stream = await rt.stream.status() if rt.stream is not None else None
    if stream is not None:
        # Events are accepted only through the stream: unreachable means unfit for writes.
        checks["event_stream"] = bool(stream["reachable"])
    ok = all(checks.values())
    report: dict[str, Any] = {
        "status": "ready" if ok else "not ready",
        "checks": checks,
        # What is down, by name: the dependency an operator has to look at.
        "down": [name for name, up in checks.items() if not up],
        # Informational: without these models the answers fall back (trending, generic).
        "models": {
            "item_index": services.content.version,
            "cf": services.recommender.cf.version,
            "segments": services.segments.version,
        },
    }
    if warming:
        report["warming"] = warming
    if rt.upstreams is not None:
        # Informational: an open circuit degrades fields (stale or UPSTREAM_UNAVAILABLE), it
        # does not make this instance unfit for traffic.
        report["upstreams"] = snapshot = rt.upstreams.snapshot()
        report["degraded"] = [n for n, u in snapshot.items() if u.get("state") != "closed"]
    if rt.redis is not None:
        # Degraded, not unready: without Redis this instance answers from its in-process tier
        # and the store (pulling every instance out of the balancer would be the outage).
        report["redis"] = rt.redis.snapshot()
        if ok and not rt.redis.available:
            report["status"] = "degraded"
            report["degraded"] = [*report.get("degraded", []), "redis"]
    if stream is not None:
        # Consumer lag: events accepted but not yet applied to profiles.
        report["event_stream"] = stream
    return _json(report, 200 if ok else 503)


async def admin_purge(request: Request) -> Response:
    rt = runtime(request)
    try:
        if not request.headers.get("authorization"):
            raise HTTPProblem(
                401,
                "purging needs an admin token",
                "UNAUTHENTICATED",
                {"WWW-Authenticate": "Bearer"},
            )
        viewer = rt.auth(request.headers.get("authorization"), None)
        return await handle_purge(rt.edge.purge, request, viewer)
    except HTTPProblem as p:
        return problem_response(p)


async def ping(request: Request) -> Response:
    # A raw JSON route: the baseline that benchmarks/edge_cache.py compares cached GETs to.
    return Response(b'{"pong":true}', media_type="application/json", headers=NO_STORE)


def parse_event_body(content_type: str, body: bytes) -> list[Any]:
    """A JSON array, ``{"batch": [...]}``, or NDJSON (``application/x-ndjson``)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in NDJSON_TYPES:
        out: list[Any] = []
        for n, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise HTTPProblem(
                    400, f"line {n} is not valid JSON: {exc}", "BAD_REQUEST"
                ) from None
        return out
    if ctype != "application/json":
        raise HTTPProblem(
            415,
            'use Content-Type application/json (array or {"batch": [...]}) or application/x-ndjson',
            "UNSUPPORTED_MEDIA_TYPE",
        )
    data = json_body(body)
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        data = data["batch"]
    if not isinstance(data, list):
        raise HTTPProblem(
            400, 'the body must be a JSON array of events or {"batch": [...]}', "BAD_REQUEST"
        )
    return data

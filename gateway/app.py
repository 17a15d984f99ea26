"""The app factory: ``create_app(settings, **overrides) -> Starlette``.

The lifespan builds what the app owns (store, ingestion writer, trending model, catalog lookup)
and closes it on shutdown; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from catalog.lookup import CatalogLookup
from gateway.edge import build_edge
from gateway.graphql_http import (
    GraphQLEndpoint,
    HTTPProblem,
    authenticate,
    json_body,
    problem_response,
    read_body,
)
from gateway.models import blend_weights, build_content, poll_models, refresh_models
from gateway.security import (
    operation_limits,
    register_edge_eraser,
    security_middleware,
    wire_security,
)
from gateway.segmentation import SegmentService, segmenting_config
from gateway.settings import Settings, load_settings
from gateway.upstream import start_upstreams
from gateway.upstream_client import upstream_deadline
from profiles.ingest import IngestionService
from profiles.types import BatchTooLarge, IngestConfig, IngestUnavailable, ProfileConfig
from recommend.engine import ModelSlot, Recommender
from recommend.trending import TrendingModel
from resolvers.context import Services
from resolvers.schema import build_schema
from storage import open_store

log = logging.getLogger("tailor.gateway")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def build_services(settings: Settings, *, clock: Callable[[], float] = time.time) -> Services:
    """Open the store and build the domain services (used by the app and by the CLI)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_path)
    catalog = CatalogLookup(store)
    profile_config = ProfileConfig(weights=dict(settings.event_weights))
    ingest = IngestionService(
        store,
        config=IngestConfig(
            custom_event_types=settings.custom_event_types,
            clock_skew_s=settings.clock_skew_s,
            max_batch_events=settings.max_batch_events,
            group_commit_ms=settings.group_commit_ms,
        ),
        profile_config=profile_config,
        categories=catalog.categories,
        clock=clock,
    )
    trending = TrendingModel(
        half_life_s=settings.trending_half_life_h * 3600.0,
        categories=catalog.categories,
        clock=clock,
        cache_s=settings.trending_cache_s,
    )
    ingest.subscribe(trending.add_events)
    content = build_content(settings)
    recommender = Recommender(
        content=content,
        trending=trending,
        cf=ModelSlot(),
        item_of=catalog.item,
        all_items=catalog.all_items,
        weights=blend_weights(settings),
        exclude_types=settings.recommend_exclude_types,
    )
    segments = SegmentService(
        store,
        settings.data_dir / "models" / "segments",
        profile_config=profile_config,
        clock=clock,
        segments_file=settings.segments_file,
        categories=catalog.categories,
        config=segmenting_config(settings),
    )
    ingest.subscribe_profiles(segments.on_profiles)
    ingest.subscribe(segments.on_events)
    recommender.segment_popular = segments.popular
    services = Services(
        store=store,
        ingest=ingest,
        trending=trending,
        profile_config=profile_config,
        catalog=catalog,
        content=content,
        recommender=recommender,
        segments=segments,
        max_first=settings.max_first,
        search_personal_weight=settings.search_personal_weight,
        clock=clock,
    )
    wire_security(settings, services)  # consent hook, PII hashing, erasure, API keys
    services.extras["segment_of"] = segments.segment_and_name
    services.extras["segment_popular"] = segments.popular
    services.extras["segment_name"] = segments.name_of
    return services


def bootstrap_models(services: Services, settings: Settings) -> None:
    """Load what serving needs from the store (trending from the recent event log)."""
    since = services.clock() - settings.trending_window_days * 86_400.0
    services.trending.add_events(services.store.iter_events(since=since))


def create_app(settings: Settings | None = None, **overrides: Any) -> Starlette:
    """Build the gateway. ``overrides`` replace settings fields; ``clock`` injects time."""
    clock: Callable[[], float] = overrides.pop("clock", time.time)
    # Seams of the edge layer (issue 7): the user -> segment hook, the CDN purge transport
    # (httpx), and a schema other than the built-in one (tests add hinted fields).
    segment_of = overrides.pop("segment_of", None)
    cdn_transport = overrides.pop("cdn_transport", None)
    schema_override = overrides.pop("schema", None)
    upstream_transport = overrides.pop("upstream_transport", None)  # httpx seam (issue 8)
    if settings is None:
        settings = load_settings(**overrides)
    elif overrides:
        from gateway.settings import replace

        settings = replace(settings, **overrides)
    schema = schema_override or build_schema()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = build_services(settings, clock=clock)
        bootstrap_models(services, settings)
        await asyncio.to_thread(refresh_models, services, settings)
        poller = asyncio.create_task(poll_models(services, settings))
        services.ingest.start()
        state["services"] = services
        state["graphql"] = GraphQLEndpoint(
            schema,
            services,
            max_body=settings.max_body_bytes,
            production=settings.production,
            graphiql=settings.graphiql_enabled,
            secret=settings.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        app.state.services = services
        state["graphql"].batch_max = settings.graphql_batch_max
        state["graphql"].configure_limits(
            operation_limits(settings), introspection=settings.introspection_enabled
        )
        if segment_of is not None:
            services.extras["segment_of"] = segment_of
        edge = build_edge(settings, services, clock=clock, cdn_transport=cdn_transport)
        edge.attach()
        state["graphql"].edge = state["edge"] = app.state.edge = services.extras["edge"] = edge
        register_edge_eraser(services, edge)  # erasure drops the person's cached answers
        upstreams = start_upstreams(
            settings, services, edge, transport=upstream_transport, clock=clock
        )
        state["upstreams"] = app.state.upstreams = upstreams
        log.info(
            "tailor ready: %d items, %d events",
            services.store.count_items(),
            services.store.count_events(),
        )
        try:
            yield
        finally:
            poller.cancel()
            services.ingest.stop()
            await edge.aclose()
            if upstreams is not None:
                await upstreams.aclose()
            services.store.close()

    async def graphql(request: Request) -> Response:
        # The request's time budget reaches its upstream calls (gateway/upstream_client.py),
        # less 10% kept to answer with partial data before the guard's 504.
        with upstream_deadline(settings.request_timeout_s * 0.9):
            return await state["graphql"].handle(request)

    async def events(request: Request) -> Response:
        services: Services = state["services"]
        try:
            if request.method != "POST":
                raise HTTPProblem(405, "use POST", "METHOD_NOT_ALLOWED", {"Allow": "POST"})
            viewer = authenticate(
                request.headers.get("authorization"),
                request.headers.get("x-anonymous-id"),
                secret=settings.jwt_secret,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            )
            raws = parse_event_body(
                request.headers.get("content-type", ""),
                await read_body(request, settings.max_body_bytes),
            )
            result = await services.ingest.ingest(
                [viewer.prepare_event(r) for r in raws], viewer.authorize_event
            )
        except HTTPProblem as p:
            return problem_response(p)
        except BatchTooLarge as exc:
            return problem_response(HTTPProblem(413, str(exc), "PAYLOAD_TOO_LARGE"))
        except IngestUnavailable as exc:
            return problem_response(
                HTTPProblem(503, str(exc), "SERVICE_UNAVAILABLE", {"Retry-After": "1"})
            )
        return Response(
            orjson.dumps(result.as_json()),
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def healthz(request: Request) -> Response:
        return Response(
            b'{"status":"ok"}', media_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def readyz(request: Request) -> Response:
        services = state.get("services")
        if services is None:
            return Response(
                b'{"status":"not ready"}',
                status_code=503,
                media_type="application/json",
                headers={"Cache-Control": "no-store"},
            )
        checks = {
            "store": services.store.ping(),
            "ingest_writer": services.ingest.running,
            # With items in the catalog, similarity and search need the index loaded.
            "item_index": services.content.ready or len(services.catalog) == 0,
        }
        ok = all(checks.values())
        report: dict[str, Any] = {
            "status": "ready" if ok else "not ready",
            "checks": checks,
            # Informational: without these models the answers fall back (trending, generic).
            "models": {
                "item_index": services.content.version,
                "cf": services.recommender.cf.version,
                "segments": services.segments.version if services.segments is not None else None,
            },
        }
        if state.get("upstreams") is not None:
            # Informational: an open circuit degrades fields (stale or UPSTREAM_UNAVAILABLE),
            # it does not make this instance unfit for traffic.
            report["upstreams"] = state["upstreams"].snapshot()
        return Response(
            orjson.dumps(report),
            status_code=200 if ok else 503,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def admin_purge(request: Request) -> Response:
        try:
            if not request.headers.get("authorization"):
                raise HTTPProblem(
                    401,
                    "purging needs an admin token",
                    "UNAUTHENTICATED",
                    {"WWW-Authenticate": "Bearer"},
                )
            viewer = authenticate(
                request.headers.get("authorization"),
                None,
                secret=settings.jwt_secret,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
            )
            return await state["edge"].handle_purge(request, viewer)
        except HTTPProblem as p:
            return problem_response(p)

    async def ping(request: Request) -> Response:
        # A raw JSON route: the baseline that benchmarks/edge_cache.py compares cached GETs to.
        return Response(
            b'{"pong":true}', media_type="application/json", headers={"Cache-Control": "no-store"}
        )

    routes = [
        Route("/graphql", graphql, methods=ALL_METHODS),
        Route("/admin/purge", admin_purge, methods=["POST"]),
        Route("/v1/ping", ping, methods=["GET"]),
        Route("/v1/events", events, methods=ALL_METHODS),
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
    ]

    def api_keys() -> Any:
        services = state.get("services")
        return services.extras.get("apikeys") if services is not None else None

    app = Starlette(
        routes=routes, lifespan=lifespan, middleware=security_middleware(settings, api_keys)
    )
    app.state.settings = settings
    return app


def parse_event_body(content_type: str, body: bytes) -> list[Any]:
    """A JSON array, ``{"batch": [...]}``, or NDJSON (``application/x-ndjson``)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
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

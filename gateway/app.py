"""The app factory: ``create_app(settings, *, seams…, **setting_overrides) -> Starlette``.

The lifespan builds what the app owns through ``gateway/wiring.py`` (store, ingestion writer,
models, edge layer, upstreams) and closes it on shutdown; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import strawberry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import routes, scrape, wiring
from gateway.http import ErrorMiddleware
from gateway.models import Refresh, poll_erasures, poll_models, refresh_models, serving_versions
from gateway.routes import Runtime
from gateway.security.apikeys import ApiKeyRegistry
from gateway.settings import Settings, load_settings, replace
from observability import tracing
from resolvers.schema import build_schema
from upstream.client import upstream_deadline

log = logging.getLogger("tailor.gateway")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    schema: strawberry.Schema | None = None,
    segment_of: Callable[[str], str | None] | None = None,
    cdn_transport: httpx.AsyncBaseTransport | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    span_exporter: Any = None,
    freeze_heap: bool = False,
    **setting_overrides: Any,
) -> Starlette:
    """Build the gateway.

    Seams: ``clock`` (wall seconds, for every cache and model), ``schema`` (a schema other than
    the built-in one), ``segment_of`` (replaces the live segment lookup), ``cdn_transport`` and
    ``upstream_transport`` (httpx transports of the CDN purge and the upstream clients),
    ``span_exporter`` (an OpenTelemetry span exporter: tracing on, exported there).
    ``freeze_heap``: once started, collect and ``gc.freeze()`` the start-up heap (unfrozen on
    shutdown), so the collector walks only what serving allocates; for a process that runs
    one app (``tailor serve`` sets it), not for test processes that build many.
    ``setting_overrides`` replace fields of ``settings`` (or of the loaded settings).
    """
    if settings is None:
        settings = load_settings(**setting_overrides)
    elif setting_overrides:
        settings = replace(settings, **setting_overrides)
    config = settings
    tracer_provider = wiring.tracer_provider(settings, span_exporter)
    keys = wiring.jwks_keys(settings)  # one key set (and its cache) for the whole app

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        upstreams = wiring.upstreams(config, transport=upstream_transport, clock=clock)
        wiring.instrument_upstreams(upstreams, tracer_provider)
        services = wiring.build_services(
            config, clock=clock, segment_of=segment_of, upstream=upstreams
        )
        stores = wiring.model_stores(config)
        wiring.bootstrap_trending(services, config)
        # The erasure log's cursor and tombstones first: every state loaded after this comes
        # from a store already clean of the erasures up to it.
        await asyncio.to_thread(services.privacy.sync_erasures)
        await asyncio.to_thread(refresh_models, services, stores)
        shared = wiring.redis_tier(config)
        edge = wiring.build_edge(
            config,
            services,
            clock=clock,
            cdn_transport=cdn_transport,
            purge_listeners=[upstreams.invalidate] if upstreams is not None else [],
            shared=shared,
        )
        edge.attach()
        wake = asyncio.Event()  # a fleet's model announcement: refresh now
        background: set[asyncio.Task[Any]] = set()
        endpoint = wiring.graphql_endpoint(
            config, services, schema or build_schema(), edge, keys=keys
        )

        def refreshed(refresh: Refresh) -> None:
            # Cached answers built on what changed are dropped.
            if refresh.changed_items:
                edge.items_changed(sorted(refresh.changed_items))
            if refresh.swapped:
                edge.models_swapped()
                if shared is not None:
                    announce = {"op": "models", "versions": serving_versions(services)}
                    task = asyncio.ensure_future(shared.publish(announce))
                    background.add(task)
                    task.add_done_callback(background.discard)

        def announced(message: dict[str, Any]) -> None:
            log.info("model versions announced: %s", message.get("versions"))
            wake.set()

        def synced(kind: str, records: Any) -> None:
            if kind == "items":
                services.catalog.update(records)
                edge.items_changed([r.id for r in records])

        poller = asyncio.create_task(poll_models(services, stores, refreshed, wake))
        jwks = asyncio.create_task(keys.keep_fresh()) if keys is not None else None
        if shared is not None:
            await wiring.start_fleet(shared, edge, announced)
        erasures = asyncio.create_task(poll_erasures(services, config.erasure_poll_s))
        services.ingest.start()
        fleet = wiring.stream_runtime(config, services)
        if fleet is not None:
            await fleet.start()
        if upstreams is not None:
            wiring.start_sync(config, upstreams, services, on_written=synced)
        app.state.runtime = Runtime(
            config,
            services,
            endpoint,
            edge,
            wiring.api_keys(services),
            upstreams,
            redis=shared,
            stream=fleet,
        )
        app.state.services, app.state.edge, app.state.upstreams = services, edge, upstreams
        log.info(
            "tailor ready: %d items, %d events",
            services.store.count_items(),
            services.store.count_events(),
        )
        if freeze_heap:
            # What start-up built (schema, services, models, caches) lives as long as the app:
            # out of the collector's way, so a collection walks only what serving allocates.
            gc.collect()
            gc.freeze()
        # Tracing and the separate metrics port live as long as the app (closed last).
        telemetry = contextlib.ExitStack()
        try:
            if tracer_provider is not None:
                telemetry.enter_context(tracing.installed(tracer_provider))
            if config.metrics_port:
                telemetry.enter_context(scrape.metrics_server(config, app.state.runtime))
            yield
        finally:
            poller.cancel()
            erasures.cancel()
            if jwks is not None:
                jwks.cancel()
            # A poll cancelled mid-read finishes its thread first (storage.threads.in_thread): wait for
            # it, so that the store is not closed under a thread still reading it.
            await asyncio.gather(poller, erasures, return_exceptions=True)
            if fleet is not None:
                await fleet.aclose()
            services.ingest.stop()
            await edge.aclose()
            if shared is not None:
                await asyncio.gather(*background, return_exceptions=True)
                await shared.aclose()
            if upstreams is not None:
                await upstreams.aclose()
            services.store.close()
            telemetry.close()
            if freeze_heap:
                gc.unfreeze()

    async def graphql(request: Request) -> Response:
        # The request's time budget reaches its upstream calls (upstream/client.py), less 10%
        # kept to answer with partial data before the guard's 504.
        with upstream_deadline(config.request_timeout_s * 0.9):
            return await routes.runtime(request).graphql.handle(request)

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=ALL_METHODS),
            Route("/admin/purge", routes.admin_purge, methods=["POST"]),
            Route("/v1/ping", routes.ping, methods=["GET"]),
            Route("/v1/events", routes.events, methods=ALL_METHODS),
            Route("/healthz", routes.healthz, methods=["GET", "HEAD"]),
            Route("/readyz", routes.readyz, methods=["GET", "HEAD"]),
            Route("/metrics", scrape.metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
        # Telemetry outermost (request id, metrics and access log see every answer); then CORS,
        # so every answer, the last-resort 500 included, is readable by an allowed browser origin
        # and preflights are answered before any guard; then compression and the last-resort
        # 500, so every error is a complete JSON answer.
        middleware=[
            *wiring.telemetry_middleware(settings, tracer_provider),
            *wiring.cors_middleware(settings),
            *wiring.compression_middleware(settings),
            Middleware(ErrorMiddleware),
            *wiring.security_middleware(settings, lambda: _api_keys(app), keys=keys),
        ],
    )
    app.state.settings = settings
    return app


def _api_keys(app: Starlette) -> ApiKeyRegistry | None:
    rt: Runtime | None = getattr(app.state, "runtime", None)
    return rt.apikeys if rt is not None else None

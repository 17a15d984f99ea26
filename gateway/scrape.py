"""``GET /metrics`` and the collector that reads the running app at scrape time.

``RuntimeCollector`` reads what the app already keeps, rather than counting it twice: the
response and profile caches' statistics, the upstream breakers and client counters, the ingest
queue depth, the serving model versions and their age, and segment sizes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from observability import metrics

if TYPE_CHECKING:
    from gateway.routes import Runtime


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: Prometheus text exposition. With ``metrics_token`` set, only callers
    presenting it (``Authorization: Bearer <token>``) are answered; in production without a
    token the main port refuses (bind ``metrics_port`` or set the token)."""
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    settings = request.app.state.settings
    if not settings.metrics_enabled or settings.metrics_port:
        return Response("not found", status_code=404, media_type="text/plain")
    if settings.metrics_token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode()):
            return Response(
                "metrics need the metrics token",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
    elif settings.production:
        return Response(
            "in production /metrics needs TAILOR_METRICS_TOKEN or its own TAILOR_METRICS_PORT",
            status_code=403,
            media_type="text/plain",
        )
    collectors = []
    if rt is not None:
        # The stream's lag is an async read: taken here, handed to the scrape-time collector.
        stream = await rt.stream.status() if rt.stream is not None else None
        collectors.append(RuntimeCollector(rt, stream=stream))
    body = metrics.exposition(*collectors)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})


class RuntimeCollector:
    """Families read from the running app at scrape time (this worker's view)."""

    def __init__(
        self,
        runtime: Runtime,
        clock: Any = time.time,
        loop: asyncio.AbstractEventLoop | None = None,
        stream: dict[str, Any] | None = None,
    ) -> None:
        """``loop``: the app's event loop, when scrapes come from another thread (the caches
        are single-threaded: their statistics are then read on the loop). ``stream``: the event
        stream's status (``StreamRuntime.status()``) when the gateway runs on one."""
        self.rt = runtime
        self.stream = stream
        self.clock = clock
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        loop = self.loop
        if loop is None or _on_loop(loop):
            yield from self._collect()
            return
        done: concurrent.futures.Future[list[Metric]] = concurrent.futures.Future()

        def gather() -> None:
            try:
                done.set_result(list(self._collect()))
            except Exception as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(gather)
        yield from done.result(timeout=10)

    def _collect(self) -> Iterator[Metric]:
        yield from self._caches()
        yield from self._upstreams()
        yield from self._ingest()
        yield from self._models()
        yield from self._segments()
        yield from self._fleet()

    def _caches(self) -> Iterator[Metric]:
        edge = self.rt.edge
        layers = {"response": edge.responses.store_stats, "profile": edge.profiles.stats}
        names = ("hits", "misses", "evictions", "expirations", "rejected")
        counters = {
            n: CounterMetricFamily(f"tailor_cache_{n}", f"Cache {n}, by layer", labels=["layer"])
            for n in names
        }
        size = GaugeMetricFamily("tailor_cache_bytes", "Bytes held, by layer", labels=["layer"])
        entries = GaugeMetricFamily("tailor_cache_entries", "Entries, by layer", labels=["layer"])
        for layer, stats in layers.items():
            for n in names:
                counters[n].add_metric([layer], getattr(stats, n))
            size.add_metric([layer], stats.bytes)
            entries.add_metric([layer], stats.entries)
        yield from counters.values()
        yield size
        yield entries
        outcomes = CounterMetricFamily(
            "tailor_response_cache_outcomes",
            "Response-cache outcomes (hits, misses, stale, stale_if_error, coalesced, ...)",
            labels=["outcome"],
        )
        response_stats = edge.responses.stats
        for field in dataclasses.fields(response_stats):
            outcomes.add_metric([field.name], getattr(response_stats, field.name))
        yield outcomes

    def _upstreams(self) -> Iterator[Metric]:
        ups = self.rt.upstreams
        states = ("closed", "open", "half_open")
        breaker = GaugeMetricFamily(
            "tailor_upstream_breaker_state",
            "Circuit breaker state of each upstream (1 for the current state)",
            labels=["upstream", "state"],
        )
        failures = GaugeMetricFamily(
            "tailor_upstream_breaker_failures",
            "Consecutive failures counted by each upstream's breaker",
            labels=["upstream"],
        )
        attempts = CounterMetricFamily(
            "tailor_upstream_attempts", "HTTP requests sent to each upstream", labels=["upstream"]
        )
        retries = CounterMetricFamily(
            "tailor_upstream_retries", "Retries of upstream calls", labels=["upstream"]
        )
        for name, client in ups.clients.items() if ups is not None else ():
            snap = client.breaker.snapshot()
            for state in states:
                breaker.add_metric([name, state], 1.0 if snap["state"] == state else 0.0)
            failures.add_metric([name], snap["failures"])
            attempts.add_metric([name], client.stats.attempts)
            retries.add_metric([name], client.stats.retries)
        yield from (breaker, failures, attempts, retries)

    def _ingest(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "tailor_ingest_queue_depth", "Event batches waiting for the ingest writer"
        )
        depth.add_metric([], self.rt.services.ingest.queue_depth)
        yield depth
        running = GaugeMetricFamily("tailor_ingest_writer_up", "1 while the ingest writer runs")
        running.add_metric([], 1.0 if self.rt.services.ingest.running else 0.0)
        yield running

    def _fleet(self) -> Iterator[Metric]:
        """The shared tier's state: Redis up and its counters; the event stream's lag."""
        redis = self.rt.redis
        if redis is not None:
            up = GaugeMetricFamily("tailor_redis_up", "1 while the Redis shared tier answers")
            up.add_metric([], 1.0 if redis.available else 0.0)
            yield up
            ops = CounterMetricFamily(
                "tailor_redis_tier",
                "Redis shared level operations (hits, misses, stored, evicted, fenced)",
                labels=["outcome"],
            )
            for outcome, n in redis.stats.items():
                ops.add_metric([outcome], n)
            yield ops
        stream = self.stream
        if stream is not None:
            up = GaugeMetricFamily("tailor_event_stream_up", "1 while the event stream answers")
            up.add_metric([], 1.0 if stream.get("reachable") else 0.0)
            yield up
            if stream.get("reachable"):
                lag = GaugeMetricFamily(
                    "tailor_event_stream_lag",
                    "Events accepted but not yet applied (pending) or delivered unacked",
                    labels=["kind"],
                )
                for kind in ("pending", "in_flight"):
                    lag.add_metric([kind], float(stream.get(kind, 0)))
                yield lag

    def _models(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "tailor_model_info",
            "The serving version of each model (value 1)",
            labels=["model", "version"],
        )
        age = GaugeMetricFamily(
            "tailor_model_age_seconds",
            "Seconds since the serving version was published",
            labels=["model"],
        )
        now = self.clock()
        for model, (version, root) in self.model_versions().items():
            if version is None:
                continue
            info.add_metric([model, version], 1.0)
            if root is not None:
                with contextlib.suppress(OSError):  # pruned since: no age
                    age.add_metric([model], max(0.0, now - (root / version).stat().st_mtime))
        yield info
        yield age

    def model_versions(self) -> dict[str, tuple[str | None, Path | None]]:
        s = self.rt.services
        rec = s.recommender
        models = self.rt.settings.data_dir / "models"  # gateway.wiring.model_stores
        return {
            "item_index": (s.content.version, _root(s.content, "store")),
            "cf": (rec.cf.version, models / "cf"),
            "ranker": (rec.ranker.version, models / "ranker"),
            "segments": (s.segments.version, _root(s.segments, "models")),
        }

    def _segments(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            "tailor_segment_size", "Profiles assigned to each segment", labels=["segment"]
        )
        for seg in self.rt.services.segments.all_segments():
            if seg.size >= 0:
                sizes.add_metric([seg.id], seg.size)
        yield sizes


def _root(owner: Any, attr: str) -> Path | None:
    store = getattr(owner, attr, None)
    root = getattr(store, "root", None)
    return root if isinstance(root, Path) else None


@contextlib.contextmanager
def metrics_server(settings: Any, runtime: Runtime) -> Iterator[None]:
    """``/metrics`` on its own port (``metrics_port`` on ``metrics_host``), for the life of the
    app; the main port then answers 404 there. One process per port: with several workers,
    use ``metrics_token`` on the main port instead."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(
        settings.metrics_port,
        addr=settings.metrics_host,
        registry=metrics.Exposition(RuntimeCollector(runtime, loop=asyncio.get_running_loop())),
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

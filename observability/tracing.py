"""Spans over the request path, off by default at no cost.

Code anywhere in Tailor writes ``with span("recommend.source", source="cf"): ...``. Until a
tracer is installed (``install``: the app's lifespan when ``TAILOR_TRACING`` is on) ``span``
returns one shared ``contextlib.nullcontext``: no OpenTelemetry call, no allocation. Installed,
it starts a child of the current span (the ASGI server span of the request; contexts follow
``asyncio.to_thread`` into worker threads, so spans of the recommender are parented too).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
_OFF: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
_tracer: Tracer | None = None


def enabled() -> bool:
    """Whether spans are being recorded in this process."""
    return _tracer is not None


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A span named ``name`` under the current one (a shared no-op when tracing is off, and
    outside a recorded trace: requests left unsampled cost no spans below their root).

    ``attributes`` must be str, bool, int or float values (OpenTelemetry's attribute types)."""
    tracer = _tracer
    if tracer is None:
        return _OFF
    from opentelemetry import trace

    if not trace.get_current_span().is_recording():
        return _OFF
    return tracer.start_as_current_span(name, attributes=attributes or None)


def set_attribute(key: str, value: str | bool | int | float) -> None:
    """Set an attribute on the current span (nothing when tracing is off)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attribute(key, value)


def current_trace_id() -> str | None:
    """The hex trace id of the current span, if tracing is on and a span is active."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def provider(
    service_name: str,
    *,
    exporter: SpanExporter | None = None,
    endpoint: str | None = None,
    batch: bool = True,
) -> TracerProvider:
    """A tracer provider exporting to ``exporter`` (tests: the in-memory exporter) or by OTLP
    over HTTP to ``endpoint`` (``None``: the ``OTEL_EXPORTER_OTLP_*`` variables decide)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    # Root requests are sampled by ``SampledASGI`` before any span exists; below them, and
    # for callers that send a ``traceparent``, the parent decides.
    tp = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(ALWAYS_ON),
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    tp.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return tp


@contextlib.contextmanager
def installed(tp: TracerProvider) -> Iterator[None]:
    """Record ``span`` calls with ``tp`` for the duration (the app's lifespan); the provider
    is flushed and shut down on exit."""
    global _tracer
    previous = _tracer
    _tracer = tp.get_tracer("tailor")
    try:
        yield
    finally:
        _tracer = previous
        tp.shutdown()


def traced(name: str) -> Callable[[F], F]:
    """Decorate an ``async`` function: its calls are spans named ``name`` (a plain await when
    tracing is off)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return await fn(*args, **kwargs)
            with span(name):
                return await fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class SampledASGI:
    """Wraps OpenTelemetry's ASGI middleware so that requests left out of the sample skip it.

    A request that carries a ``traceparent`` goes through it (its sampled flag decides: the
    provider's sampler is parent-based); a new one goes through, and is recorded, with
    probability ``ratio``. Every other request calls the app directly: no server span, no
    attribute collection, and ``span`` records nothing below it."""

    def __init__(self, app: Any, *, traced: Any, ratio: float, rng: Any = None) -> None:
        import random

        self.app = app
        self.traced = traced
        self.ratio = ratio
        self.random = rng or random.random

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.ratio >= 1.0:
            await self.traced(scope, receive, send)
            return
        if any(k == b"traceparent" for k, _ in scope["headers"]) or self.random() < self.ratio:
            await self.traced(scope, receive, send)
            return
        await self.app(scope, receive, send)

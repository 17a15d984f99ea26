"""Traces captured with OpenTelemetry's in-memory exporter: one trace per request, parented
across the edge cache, the resolvers, the candidate sources, FAISS and httpx upstream calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app import create_app
from observability import tracing
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_recommendations import RECS, open_shop
from tests.observability.test_metrics import catalog_upstream
from tests.upstream.conftest import FAST


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def gw(tmp_path: Path, exporter: InMemorySpanExporter) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=clock,
        upstream_transport=httpx.MockTransport(catalog_upstream),
        upstream_catalog_url="http://catalog.test",
        span_exporter=exporter,
        **FAST,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, tmp_path / "var")
    assert not tracing.enabled()  # the lifespan uninstalls the tracer


def by_id(spans: tuple[ReadableSpan, ...]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None:
        found = index[parent.span_id]
        names.append(found.name)
        parent = found.parent
    return names


def one(spans: tuple[ReadableSpan, ...], name: str, **attrs: Any) -> ReadableSpan:
    found = [
        s
        for s in spans
        if s.name == name and all((s.attributes or {}).get(k) == v for k, v in attrs.items())
    ]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


async def test_one_trace_per_request_parented_down_to_faiss(
    gw: Gateway, exporter: InMemorySpanExporter
) -> None:
    await open_shop(gw)
    exporter.clear()
    r = await gw.gql(RECS, {"first": 5}, user="u0")
    assert "errors" not in r.json()
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1  # one trace for the request
    index = by_id(spans)
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(server) == 1 and server[0].parent is None
    assert server[0].attributes["tailor.request_id"] == r.headers["x-request-id"]
    cache = one(spans, "edge.cache")
    assert cache.attributes["tailor.cache"] == r.headers["x-cache"]
    assert ancestors(cache, index) == [server[0].name]
    execute = one(spans, "graphql.execute")
    assert ancestors(execute, index)[0] == "edge.cache"
    resolver = one(spans, "resolve.recommendations")
    assert ancestors(resolver, index)[0] == "graphql.execute"
    recommend = one(spans, "recommend", strategy="hybrid")
    assert ancestors(recommend, index)[:2] == ["resolve.recommendations", "graphql.execute"]
    for source in ("cf", "content", "trending"):
        span = one(spans, "recommend.source", source=source)
        assert ancestors(span, index)[0] == "recommend", source
    faiss = [s for s in spans if s.name == "faiss.search"]
    assert faiss and all(
        ancestors(s, index)[:2] == ["recommend.source", "recommend"] for s in faiss
    )
    parse = one(spans, "graphql.parse_validate")
    assert parse.context.trace_id == server[0].context.trace_id

    exporter.clear()
    assert (await gw.gql(RECS, {"first": 5}, user="u1")).status_code == 200
    second = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in second}) == 1
    assert second[0].context.trace_id != server[0].context.trace_id  # a new trace


async def test_upstream_http_calls_are_client_spans_of_the_request(
    gw: Gateway, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    r = await gw.gql('{ item(id: "u4") { id title } }')
    assert r.json()["data"]["item"]["title"] == "Upstream item 4"
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 1
    index = by_id(spans)
    call = one(spans, "upstream.call", upstream="catalog")
    assert "graphql.execute" in ancestors(call, index)
    http = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(http) == 1
    assert ancestors(http[0], index)[0] == "upstream.call"
    attrs = http[0].attributes or {}
    assert attrs.get("http.response.status_code", attrs.get("http.status_code")) == 200


async def test_tracing_off_records_nothing_and_costs_a_shared_noop(tmp_path: Path) -> None:
    assert not tracing.enabled()
    assert tracing.span("a") is tracing.span("b")  # the same no-op object, no allocation
    app = create_app(data_dir=tmp_path / "var", encoder="hashing")
    async with app.router.lifespan_context(app):
        assert not tracing.enabled()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.post("/graphql", json={"query": "{ trending { score } }"})
    assert r.status_code == 200


async def test_unsampled_requests_skip_tracing_and_a_caller_trace_is_continued(
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(
        data_dir=tmp_path / "var",
        encoder="hashing",
        span_exporter=exporter,
        tracing_sample_ratio=0.0,
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        r = await c.post("/graphql", json={"query": "{ trending { score } }"})
        assert r.status_code == 200 and r.headers["x-request-id"]
        assert exporter.get_finished_spans() == ()  # not sampled: not even a root span
        headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        query = {"query": "{ trending(first: 2) { score } }"}  # not cached yet
        r = await c.post("/graphql", json=query, headers=headers)
        assert r.status_code == 200
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {"edge.cache", "graphql.execute"} <= names
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}

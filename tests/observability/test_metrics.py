"""``/metrics`` after a scripted mix of queries and events, parsed with prometheus_client's
parser: every family is present with sane values, and the edge cache's hit ratio equals the
``X-Cache`` headers this test counted. The families are process-wide, so the test compares a
scrape before the mix with one after it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.models import refresh_models
from gateway.wiring import model_stores
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_recommendations import RECS, open_shop
from tests.upstream.conftest import FAST, upstream_items

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

TRENDING = "query Trending($n: Int!) { trending(first: $n) { item { id } score } }"


def scrape_text(text: str) -> tuple[Samples, set[str]]:
    samples: Samples = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, families


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def catalog_upstream(request: httpx.Request) -> httpx.Response:
    rows = {r["id"]: r for r in upstream_items(20)}
    ids = request.url.params["ids"].split(",")
    return httpx.Response(200, json={"items": [rows[i] for i in ids if i in rows]})


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=clock,
        upstream_transport=httpx.MockTransport(catalog_upstream),
        upstream_catalog_url="http://catalog.test",
        **FAST,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, tmp_path / "var")


def persisted_get(query: str, name: str, variables: dict[str, Any]) -> dict[str, str]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {
        "operationName": name,
        "variables": json.dumps(variables),
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}}),
    }


async def test_metrics_after_a_scripted_mix(gw: Gateway) -> None:
    await open_shop(gw)
    gw.services.segments.train()
    refresh_models(gw.services, model_stores(gw.app.state.settings))
    before, _ = scrape_text((await gw.client.get("/metrics")).text)
    x_cache: Counter[str] = Counter()

    def seen(r: httpx.Response) -> httpx.Response:
        if "x-cache" in r.headers:
            x_cache[r.headers["x-cache"]] += 1
        return r

    # Persisted query: a miss (unknown hash), a registration, then cached GETs.
    params = persisted_get(TRENDING, "Trending", {"n": 3})
    r = seen(await gw.client.get("/graphql", params=params))
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    body = {
        "query": TRENDING,
        "operationName": "Trending",
        "variables": {"n": 3},
        "extensions": json.loads(params["extensions"]),
    }
    seen(await gw.client.post("/graphql", json=body))
    for _ in range(6):
        r = seen(await gw.client.get("/graphql", params=params))
        assert r.status_code == 200 and r.headers["x-cache"] == "HIT"
    # Free-form queries: private recommendations (twice), an upstream item, a validation
    # error; a mutation bypasses the cache.
    for _ in range(2):
        seen(await gw.gql(RECS, {"first": 5}, user="u0"))
    r = seen(await gw.gql('{ item(id: "u3") { id title } }'))
    assert r.json()["data"]["item"]["title"] == "Upstream item 3"
    r = seen(await gw.gql("{ nope }"))
    assert r.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    track = "mutation($e: [EventInput!]!) { track(events: $e) { accepted } }"
    r = seen(
        await gw.gql(
            track, {"e": [{"messageId": "t-1", "type": "view", "itemId": "i1"}]}, user="u1"
        )
    )
    assert r.json().get("data") == {"track": {"accepted": 1}}, r.json()
    # Events: accepted, duplicate, rejected.
    events = [
        {"messageId": "m-1", "type": "view", "userId": "u9", "itemId": "i2"},
        {"messageId": "m-1", "type": "view", "userId": "u9", "itemId": "i2"},
        {"type": "view"},
    ]
    token = gw.token("u9")
    r = await gw.client.post(
        "/v1/events", json=events, headers={"authorization": f"Bearer {token}"}
    )
    assert [x["status"] for x in r.json()["results"]] == ["accepted", "duplicate", "rejected"]

    r = await gw.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    after, families = scrape_text(r.text)

    expected = {
        "tailor_http_requests",
        "tailor_http_request_duration_seconds",
        "tailor_graphql_errors",
        "tailor_edge_cache_requests",
        "tailor_persisted_query_registrations",
        "tailor_persisted_query_misses",
        "tailor_upstream_calls",
        "tailor_upstream_call_duration_seconds",
        "tailor_upstream_breaker_state",
        "tailor_ingest_events",
        "tailor_ingest_queue_depth",
        "tailor_recommend_duration_seconds",
        "tailor_recommend_source_duration_seconds",
        "tailor_model_info",
        "tailor_model_age_seconds",
        "tailor_segment_size",
        "tailor_cache_hits",
        "tailor_cache_bytes",
        "tailor_response_cache_outcomes",
    }
    assert expected <= families, expected - families

    # Requests by route, persisted operation name (free-form: anonymous) and status.
    assert delta(after, before, "tailor_http_requests_total", operation="Trending") == 7
    assert delta(after, before, "tailor_http_requests_total", route="/v1/events") == 1
    assert delta(after, before, "tailor_http_requests_total", route="/metrics") == 1
    graphql = delta(after, before, "tailor_http_requests_total", route="/graphql")
    assert graphql == sum(x_cache.values()) + 1  # + the unknown-hash answer, no X-Cache
    assert (
        delta(after, before, "tailor_http_request_duration_seconds_count", route="/graphql")
        == graphql
    )
    assert delta(after, before, "tailor_http_request_duration_seconds_sum", route="/graphql") > 0

    # The hit ratio from the metrics equals the one of the X-Cache headers.
    cache = {
        result: delta(after, before, "tailor_edge_cache_requests_total", result=result)
        for result in ("HIT", "MISS", "STALE", "BYPASS")
    }
    assert cache == {k: float(x_cache[k]) for k in cache}
    hits = cache["HIT"]
    assert hits / sum(cache.values()) == x_cache["HIT"] / sum(x_cache.values())
    assert hits >= 6  # the six persisted GETs at least
    assert delta(after, before, "tailor_edge_cache_requests_total", scope="private") == 2
    # The invalid document and the mutation bypass the cache.
    assert delta(after, before, "tailor_edge_cache_requests_total", scope="none") == 2

    assert (
        delta(after, before, "tailor_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    )
    assert (
        delta(after, before, "tailor_graphql_errors_total", code="PERSISTED_QUERY_NOT_FOUND") == 1
    )
    assert delta(after, before, "tailor_persisted_query_registrations_total") == 1
    assert delta(after, before, "tailor_persisted_query_misses_total") == 1

    assert (
        delta(after, before, "tailor_upstream_calls_total", upstream="catalog", outcome="ok") >= 1
    )
    assert total(after, "tailor_upstream_breaker_state", upstream="catalog", state="closed") == 1
    assert total(after, "tailor_upstream_breaker_state", upstream="catalog", state="open") == 0

    # accepted: the tracked view and the first event of the batch.
    assert delta(after, before, "tailor_ingest_events_total", outcome="accepted") == 2
    assert delta(after, before, "tailor_ingest_events_total", outcome="duplicate") == 1
    assert delta(after, before, "tailor_ingest_events_total", outcome="rejected") == 1
    assert total(after, "tailor_ingest_queue_depth") == 0

    assert (
        delta(after, before, "tailor_recommend_duration_seconds_count", strategy="hybrid")
        == 2 - x_cache["HIT"] + 6
    )  # one per recommendations query the cache did not answer
    for source in ("cf", "content", "trending"):
        assert (
            delta(after, before, "tailor_recommend_source_duration_seconds_count", source=source)
            >= 1
        ), source

    versions = {
        dict(ls)["model"]: dict(ls)["version"] for (n, ls) in after if n == "tailor_model_info"
    }
    assert versions["item_index"] == gw.services.content.version
    assert versions["cf"] == gw.services.recommender.cf.version
    assert versions["segments"] == gw.services.segments.version
    for model in ("item_index", "cf", "segments"):
        assert 0 <= total(after, "tailor_model_age_seconds", model=model) < 3600
    sizes = {dict(ls)["segment"]: v for (n, ls), v in after.items() if n == "tailor_segment_size"}
    assert sizes and all(v >= 0 for v in sizes.values())
    assert sum(sizes.values()) == sum(s.size for s in gw.services.segments.all_segments())

    assert total(after, "tailor_cache_hits_total", layer="response") >= hits
    assert total(after, "tailor_cache_entries", layer="response") >= 2
    assert total(after, "tailor_cache_bytes", layer="response") > 0


async def test_every_response_carries_a_request_id(gw: Gateway) -> None:
    r = await gw.client.get("/healthz")
    assert len(r.headers["x-request-id"]) == 16
    r = await gw.client.get("/healthz", headers={"x-request-id": "edge-abc.123"})
    assert r.headers["x-request-id"] == "edge-abc.123"  # a sane caller id is kept
    r = await gw.client.get("/healthz", headers={"x-request-id": "bad id;" * 20})
    assert len(r.headers["x-request-id"]) == 16  # an unsafe one is replaced


async def test_operation_names_have_bounded_cardinality(gw: Gateway) -> None:
    from observability import metrics

    seen_before = set(metrics._operations)
    try:
        metrics._operations.clear()
        metrics._operations.update(f"op{n}" for n in range(metrics.MAX_OPERATIONS))
        assert metrics.operation_label("op1") == "op1"
        assert metrics.operation_label("brand-new") == metrics.OTHER
        assert metrics.operation_label(None) == metrics.ANONYMOUS
    finally:
        metrics._operations.clear()
        metrics._operations.update(seen_before)


async def test_metrics_protection(tmp_path: Path) -> None:
    async def get(app: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.get("/metrics", headers=headers)

    common: dict[str, Any] = {"data_dir": tmp_path / "var", "encoder": "hashing"}
    prod = {**common, "production": True, "jwt_secret": SECRET}
    r = await get(create_app(**prod))
    assert r.status_code == 403 and "TAILOR_METRICS_TOKEN" in r.text
    app = create_app(**prod, metrics_token="s3cret-token")
    assert (await get(app)).status_code == 401
    app = create_app(**prod, metrics_token="s3cret-token")
    r = await get(app, {"authorization": "Bearer s3cret-token"})
    assert r.status_code == 200 and "tailor_http_requests" in r.text
    assert (await get(create_app(**common, metrics_enabled=False))).status_code == 404


async def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    from tests.upstream.conftest import free_port

    port = free_port()
    app = create_app(data_dir=tmp_path / "var", encoder="hashing", metrics_port=port)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            assert (await c.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200
    _samples, families = scrape_text(r.text)
    assert {"tailor_ingest_queue_depth", "tailor_cache_hits", "tailor_http_requests"} <= families

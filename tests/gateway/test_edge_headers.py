"""The header matrix: scope x credentials x errors x method x APQ hit/miss, and the SDL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from resolvers.schema import build_schema
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_edge_helpers import BACKEND, apq_params, bearer, edge, sha

__all__ = ["edge"]

PUBLIC_Q = "{ trending(first: 3) { score item { id } } }"
PRIVATE_Q = "{ me { id anonymous } }"
SEGMENT_Q = "{ segmentOffer }"
ERROR_Q = "{ counter }"

CREDENTIALS = {
    "none": lambda gw: {},
    "user": lambda gw: bearer(gw, "u1"),
    "anonymous": lambda gw: {"x-anonymous-id": "visitor-1"},
}


async def _ask(gw: Gateway, method: str, query: str, headers: dict[str, str]) -> object:
    if method == "GET":
        return await gw.client.get("/graphql", params={"query": query}, headers=headers)
    return await gw.client.post("/graphql", json={"query": query}, headers=headers)


def test_sdl_shows_the_directive_and_the_hints() -> None:
    sdl = build_schema().as_str()
    assert (
        "directive @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean, "
        "staleWhileRevalidate: Int, staleIfError: Int) on OBJECT | FIELD_DEFINITION | INTERFACE | UNION"
    ) in sdl
    assert "enum CacheControlScope {\n  PUBLIC\n  SEGMENT\n  PRIVATE\n}" in sdl
    assert "type Item @cacheControl(maxAge: 300, scope: PUBLIC" in sdl
    assert "type User @cacheControl(maxAge: 60, scope: PRIVATE)" in sdl
    assert (
        "@cacheControl(maxAge: 30, scope: PUBLIC, staleWhileRevalidate: 30, staleIfError: 600)"
        in sdl
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("who", list(CREDENTIALS))
async def test_public_answers_are_public_for_everyone(edge: Gateway, method: str, who: str) -> None:
    r = await _ask(edge, method, PUBLIC_Q, CREDENTIALS[who](edge))
    assert r.status_code == 200
    assert r.headers["cache-control"] == (
        "public, max-age=30, s-maxage=30, stale-while-revalidate=30, stale-if-error=600"
    )
    assert r.headers["vary"] == "Accept, Origin"  # Origin: the CORS headers depend on it
    assert r.headers["etag"].startswith('"')
    assert "x-tailor-segment" not in r.headers  # a shared answer never carries a token


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("who", list(CREDENTIALS))
async def test_private_answers_are_private_and_vary_on_credentials(
    edge: Gateway, method: str, who: str
) -> None:
    r = await _ask(edge, method, PRIVATE_Q, CREDENTIALS[who](edge))
    assert r.status_code == 200
    cc = r.headers["cache-control"]
    assert cc == "private, max-age=60"
    assert "public" not in cc and "s-maxage" not in cc
    vary = [v.strip() for v in r.headers["vary"].split(",")]
    assert {"Authorization", "X-Anonymous-Id"} <= set(vary)
    if who == "user":
        assert "user:u1" in r.headers["surrogate-key"].split()
        assert "type:User" in r.headers["cache-tag"].split(",")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_segment_answers(edge: Gateway, method: str) -> None:
    # No credentials, no token: the generic answer, shared and keyed by the (absent) token.
    r = await _ask(edge, method, SEGMENT_Q, {})
    assert r.json() == {"data": {"segmentOffer": "offer:generic"}}
    assert r.headers["cache-control"] == "public, max-age=60, s-maxage=120"
    assert r.headers["vary"] == "Accept, X-Tailor-Segment, Origin"

    # Credentials of a user in segment 3: private (a CDN does not key by credentials) + a token.
    r = await _ask(edge, method, SEGMENT_Q, bearer(edge, "u1"))
    assert r.json() == {"data": {"segmentOffer": "offer:3"}}
    assert r.headers["cache-control"].startswith("private, ")
    assert "segment:3" in r.headers["surrogate-key"].split()
    token = r.headers["x-tailor-segment"]

    # The token alone (what an edge worker forwards): shared, keyed by the token.
    r = await _ask(edge, method, SEGMENT_Q, {"x-tailor-segment": token})
    assert r.json() == {"data": {"segmentOffer": "offer:3"}}
    assert r.headers["cache-control"] == "public, max-age=60, s-maxage=120"
    assert r.headers["vary"] == "Accept, X-Tailor-Segment, Origin"
    assert "x-tailor-segment" not in r.headers


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("who", list(CREDENTIALS))
async def test_errors_are_no_store(edge: Gateway, method: str, who: str) -> None:
    BACKEND.fail = True
    r = await _ask(edge, method, ERROR_Q, CREDENTIALS[who](edge))
    assert r.status_code == 200  # field errors: 200 with partial data (GraphQL over HTTP)
    assert r.json()["errors"][0]["path"] == ["counter"]
    assert r.headers["cache-control"] == "no-store"
    assert "etag" not in r.headers and "surrogate-key" not in r.headers


@pytest.mark.parametrize("who", list(CREDENTIALS))
async def test_mutations_are_no_store_and_bypass(edge: Gateway, who: str) -> None:
    q = 'mutation { track(events: [{messageId: "m1", type: view, itemId: "i1", anonymousId: "visitor-1"}]) { accepted } }'
    r = await edge.client.post("/graphql", json={"query": q}, headers=CREDENTIALS[who](edge))
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-cache"] == "BYPASS"
    r = await edge.client.get("/graphql", params={"query": q}, headers=CREDENTIALS[who](edge))
    assert r.status_code == 405
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("who", list(CREDENTIALS))
async def test_apq_hit_and_miss(edge: Gateway, method: str, who: str) -> None:
    headers = CREDENTIALS[who](edge)

    async def send(with_query: bool) -> object:
        params = apq_params(PUBLIC_Q, with_query=with_query)
        if method == "GET":
            return await edge.client.get("/graphql", params=params, headers=headers)
        body: dict[str, object] = {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha(PUBLIC_Q)}}
        }
        if with_query:
            body["query"] = PUBLIC_Q
        return await edge.client.post("/graphql", json=body, headers=headers)

    miss = await send(False)
    assert miss.status_code == 200
    assert miss.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert miss.headers["cache-control"] == "no-store"
    registered = await send(True)
    assert registered.headers["cache-control"].startswith("public, ")
    hit = await send(False)
    assert hit.status_code == 200
    assert hit.json() == registered.json()
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["cache-control"] == registered.headers["cache-control"]


async def test_request_errors_are_no_store(edge: Gateway) -> None:
    for r in (
        await edge.client.post(
            "/graphql", content=b"{nope", headers={"content-type": "application/json"}
        ),
        await edge.client.get("/graphql", params={"query": "{ nope }"}),
        await edge.client.get(
            "/graphql", params={"query": PRIVATE_Q}, headers={"authorization": "Bearer x"}
        ),
    ):
        assert r.status_code in (200, 400, 401)
        assert r.headers["cache-control"] == "no-store"


async def test_browser_and_shared_ages_are_capped_separately(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        clock=clock,
        edge_browser_max_age=10,
        edge_shared_max_age=20,
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        r = await c.get("/graphql", params={"query": PUBLIC_Q})
    assert r.headers["cache-control"].startswith("public, max-age=10, s-maxage=20, ")


async def test_unkeyed_headers_never_change_a_cacheable_answer(edge: Gateway) -> None:
    first = await edge.client.get("/graphql", params={"query": PUBLIC_Q})
    for headers in (
        {"x-forwarded-host": "evil.example"},
        {"x-http-method-override": "POST"},
        {"x-forwarded-proto": "http", "x-original-url": "/admin/purge"},
    ):
        r = await edge.client.get("/graphql", params={"query": PUBLIC_Q}, headers=headers)
        assert r.headers["x-cache"] == "HIT"
        assert r.content == first.content
        assert r.headers["etag"] == first.headers["etag"]
        assert r.headers["cache-control"] == first.headers["cache-control"]

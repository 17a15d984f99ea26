"""CORS through the ASGI app: dev servers out of the box, production closed until configured,
listed origins with credentials, cacheable preflights, the segment token readable by scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import SettingsError, load_settings
from tests.conftest import SECRET, FakeClock

SHOP = "https://shop.example.com"
PUBLIC_Q = "{ trending(first: 3) { score item { id } } }"
SEGMENT_Q = "{ segmentRecommendations(first: 2) { score } }"


@asynccontextmanager
async def client(tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=FakeClock(),
        **settings,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as c:
            yield c


def preflight_headers(origin: str, *headers: str) -> dict[str, str]:
    h = {"origin": origin, "access-control-request-method": "POST"}
    if headers:
        h["access-control-request-headers"] = ", ".join(headers)
    return h


def listed(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",") if v.strip()}


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:5173", "http://127.0.0.1:3000", "https://localhost", "http://[::1]:8080"],
)
async def test_dev_servers_work_out_of_the_box(tmp_path: Path, origin: str) -> None:
    async with client(tmp_path) as c:
        pre = await c.options(
            "/graphql",
            headers=preflight_headers(
                origin,
                "authorization",
                "content-type",
                "x-tailor-segment",
                "apollographql-client-name",
                "apollographql-client-version",
                "x-anonymous-id",
            ),
        )
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == origin
        assert pre.headers["access-control-max-age"] == "7200"
        assert "access-control-allow-credentials" not in pre.headers  # not a listed origin
        allowed = listed(pre.headers["access-control-allow-headers"])
        assert {"authorization", "content-type", "x-tailor-segment"} <= allowed
        assert {"apollographql-client-name", "apollographql-client-version"} <= allowed
        assert "POST" in pre.headers["access-control-allow-methods"]

        r = await c.post("/graphql", json={"query": PUBLIC_Q}, headers={"origin": origin})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        exposed = listed(r.headers["access-control-expose-headers"])
        assert {"x-tailor-segment", "etag", "x-cache"} <= exposed
        assert "origin" in listed(r.headers["vary"])


async def test_other_origins_are_refused_in_development(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        for origin in ("https://evil.example", "http://localhost.evil.example", "null"):
            pre = await c.options("/graphql", headers=preflight_headers(origin))
            assert pre.status_code == 400, origin
            assert "access-control-allow-origin" not in pre.headers
            r = await c.post("/graphql", json={"query": PUBLIC_Q}, headers={"origin": origin})
            assert r.status_code == 200  # the server answers; the browser hides it
            assert "access-control-allow-origin" not in r.headers
            assert "origin" in listed(r.headers["vary"])  # never cached for an allowed origin


async def test_production_allows_nothing_until_configured(tmp_path: Path) -> None:
    async with client(tmp_path, production=True) as c:
        pre = await c.options("/graphql", headers=preflight_headers("http://localhost:5173"))
        assert "access-control-allow-origin" not in pre.headers
        assert pre.status_code != 200
        r = await c.post(
            "/graphql", json={"query": PUBLIC_Q}, headers={"origin": "http://localhost:5173"}
        )
        assert "access-control-allow-origin" not in r.headers


async def test_production_listed_origin_gets_credentials(tmp_path: Path) -> None:
    async with client(tmp_path, production=True, cors_origins=(SHOP,), cors_max_age=600) as c:
        pre = await c.options("/graphql", headers=preflight_headers(SHOP, "authorization"))
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == SHOP
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert pre.headers["access-control-max-age"] == "600"
        r = await c.get("/graphql", params={"query": PUBLIC_Q}, headers={"origin": SHOP})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == SHOP
        assert r.headers["access-control-allow-credentials"] == "true"
        # Dev servers are not allowed in production.
        dev = await c.options("/graphql", headers=preflight_headers("http://localhost:5173"))
        assert dev.status_code == 400


async def test_listed_and_dev_origins_side_by_side(tmp_path: Path) -> None:
    async with client(tmp_path, cors_origins=(SHOP,)) as c:
        shop = await c.post("/graphql", json={"query": PUBLIC_Q}, headers={"origin": SHOP})
        assert shop.headers["access-control-allow-credentials"] == "true"
        dev = await c.post(
            "/graphql", json={"query": PUBLIC_Q}, headers={"origin": "http://localhost:5173"}
        )
        assert dev.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "access-control-allow-credentials" not in dev.headers


async def test_wildcard_never_sends_credentials(tmp_path: Path) -> None:
    async with client(tmp_path, production=True, cors_origins=("*",)) as c:
        pre = await c.options("/graphql", headers=preflight_headers("https://any.example"))
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in pre.headers
        r = await c.post(
            "/graphql",
            json={"query": PUBLIC_Q},
            headers={"origin": "https://any.example", "cookie": "a=b"},
        )
        assert r.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in r.headers


async def test_segment_token_is_readable_by_the_page(tmp_path: Path) -> None:
    origin = "http://localhost:5173"
    async with client(tmp_path, segment_of=lambda _user: "s1") as c:
        from gateway.security.auth import issue_token

        token = issue_token(SECRET, "u1")
        r = await c.post(
            "/graphql",
            json={"query": SEGMENT_Q},
            headers={"origin": origin, "authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text
        assert "x-tailor-segment" in r.headers
        assert "x-tailor-segment" in listed(r.headers["access-control-expose-headers"])


async def test_refusals_carry_cors_headers(tmp_path: Path) -> None:
    """A 429 or 401 must be readable by the page, or the app cannot tell the user why."""
    origin = "http://localhost:5173"
    async with client(tmp_path, rate_limit_burst=1, rate_limit_per_s=0.001) as c:
        first = await c.post("/graphql", json={"query": PUBLIC_Q}, headers={"origin": origin})
        assert first.status_code == 200
        limited = await c.post("/graphql", json={"query": PUBLIC_Q}, headers={"origin": origin})
        assert limited.status_code == 429
        assert limited.headers["access-control-allow-origin"] == origin
        assert "retry-after" in listed(limited.headers["access-control-expose-headers"])
    async with client(tmp_path) as c:
        bad = await c.post(
            "/graphql",
            json={"query": PUBLIC_Q},
            headers={"origin": origin, "authorization": "Bearer nope"},
        )
        assert bad.status_code == 401
        assert bad.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "bad", ["https://shop.example.com/", "shop.example.com", "ftp://x.example"]
)
def test_bad_origins_name_the_setting(tmp_path: Path, bad: str) -> None:
    with pytest.raises(SettingsError, match="cors_origins"):
        create_app(data_dir=tmp_path, jwt_secret=SECRET, cors_origins=(bad,))


def test_origins_from_the_environment() -> None:
    s = load_settings(environ={"TAILOR_CORS_ORIGINS": f"{SHOP}, https://m.example.com"})
    assert s.cors_origins == (SHOP, "https://m.example.com")

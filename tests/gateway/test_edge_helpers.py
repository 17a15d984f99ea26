"""Shared pieces of the edge-cache tests: an app with test-only hinted fields, and a shared-cache
test double that honours Cache-Control and Vary as RFC 9111 says (plus tests of the double)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from strawberry.types import Info

from cache import CacheScope
from gateway.app import create_app
from resolvers.cache_control import CacheControl, CacheControlScope, set_cache_hint, viewer_segment
from resolvers.schema import Mutation, Query
from tests.conftest import NOW, SECRET, FakeClock, Gateway, item_rows


@dataclass
class Backend:
    """What the test-only resolvers do; tests flip ``fail`` and read ``calls``."""

    calls: int = 0
    fail: bool = False
    gate: asyncio.Event | None = None
    segments: dict[str, str] = field(default_factory=dict)


BACKEND = Backend()


@strawberry.type
class EdgeQuery(Query):
    @strawberry.field(directives=[CacheControl(max_age=120, scope=CacheControlScope.SEGMENT)])
    def segment_offer(self, info: Info[Any, Any]) -> str:
        segment = viewer_segment(info)
        return f"offer:{segment or 'generic'}"

    @strawberry.field(
        directives=[CacheControl(max_age=60, stale_while_revalidate=30, stale_if_error=300)]
    )
    async def counter(self) -> int:
        BACKEND.calls += 1
        if BACKEND.gate is not None:
            await BACKEND.gate.wait()
        if BACKEND.fail:
            raise RuntimeError("backend down")
        return BACKEND.calls

    @strawberry.field
    def dynamic(self, info: Info[Any, Any], age: int) -> str:
        set_cache_hint(info, max_age=age, scope=CacheScope.PUBLIC)
        return f"age {age}"


EDGE_SCHEMA = strawberry.Schema(query=EdgeQuery, mutation=Mutation)


@pytest.fixture
async def edge(
    tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> AsyncIterator[Gateway]:
    """The real app with the test-only fields above; ``BACKEND`` reset for each test."""
    BACKEND.calls, BACKEND.fail, BACKEND.gate = 0, False, None
    BACKEND.segments = {"u1": "3", "u2": "5", "u3": "3"}
    # Per-client limits are the security suite's business: 200 concurrent requests of one client must reach
    # the cache here, not the rate limiter or the concurrency cap.
    overrides: dict[str, Any] = {"max_concurrency": 0, "rate_limit_per_s": 0}
    overrides.update(getattr(request, "param", None) or {})
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        clock=clock,
        schema=EDGE_SCHEMA,
        segment_of=lambda key: BACKEND.segments.get(key),
        **overrides,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, tmp_path / "var")


def seed_items(gw: Gateway, n: int = 6) -> None:
    from catalog.importer import validate_item

    items = [validate_item(r, NOW) for r in item_rows(n)]
    gw.services.store.upsert_items(items)
    gw.services.catalog.update(items)


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq_params(query: str, *, with_query: bool = False, **variables: Any) -> dict[str, str]:
    params = {
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha(query)}})
    }
    if with_query:
        params["query"] = query
    if variables:
        params["variables"] = json.dumps(variables)
    return params


def bearer(gw: Gateway, user: str, *scopes: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token(user, *scopes)}"}


# ---------------------------------------------------------------------- shared cache double


def _directives(cache_control: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.lower()] = value or None
    return out


@dataclass
class _Stored:
    response: httpx.Response
    request_headers: dict[str, str]
    stored_at: float
    vary: list[str]


class SharedCache:
    """A shared cache (CDN) in front of the app, per RFC 9111 for GET:

    * stores only 200s without ``no-store``/``private``, with a freshness lifetime
      (``s-maxage`` over ``max-age``), and a request with ``Authorization`` only when the response
      says ``public``, ``s-maxage`` or ``must-revalidate`` (§3, §3.5);
    * serves a stored response only when every header named in its ``Vary`` matches the new
      request (absent matches absent; ``Vary: *`` never matches) and it is fresh (§4.1, §4.2),
      with ``Age`` = stored ``Age`` + time held.
    """

    def __init__(self, client: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self.client = client
        self.clock = clock
        self.entries: dict[str, list[_Stored]] = {}
        self.hits = 0

    async def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        req = {k.lower(): v for k, v in (headers or {}).items()}
        for stored in self.entries.get(url, []):
            if self._matches(stored, req) and self._fresh(stored):
                self.hits += 1
                return stored.response
        response = await self.client.get(url, headers=req)
        if self._storable(response, req):
            vary = [
                v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()
            ]
            variants = [
                s for s in self.entries.get(url, []) if not self._matches_vary(vary, s, req)
            ]
            variants.append(_Stored(response, req, self.clock(), vary))
            self.entries[url] = variants
        return response

    @staticmethod
    def _storable(response: httpx.Response, req: dict[str, str]) -> bool:
        if response.status_code != 200:
            return False
        cc = _directives(response.headers.get("cache-control", ""))
        if "no-store" in cc or "private" in cc:
            return False
        if "authorization" in req and not ({"public", "s-maxage", "must-revalidate"} & cc.keys()):
            return False
        return "s-maxage" in cc or "max-age" in cc

    @staticmethod
    def _matches_vary(vary: list[str], stored: _Stored, req: dict[str, str]) -> bool:
        if "*" in vary:
            return False
        return all(stored.request_headers.get(name) == req.get(name) for name in vary)

    def _matches(self, stored: _Stored, req: dict[str, str]) -> bool:
        return self._matches_vary(stored.vary, stored, req)

    def _fresh(self, stored: _Stored) -> bool:
        cc = _directives(stored.response.headers.get("cache-control", ""))
        lifetime = int(cc.get("s-maxage") or cc.get("max-age") or 0)
        age = int(stored.response.headers.get("age", "0")) + (self.clock() - stored.stored_at)
        return age < lifetime


# ---------------------------------------------------------------------- tests of the double


def _response(cache_control: str, vary: str = "", body: str = "x") -> httpx.Response:
    headers = {"cache-control": cache_control}
    if vary:
        headers["vary"] = vary
    return httpx.Response(200, headers=headers, text=body)


async def test_shared_cache_double_honours_private_vary_and_authorization() -> None:
    answers: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    clock = FakeClock()
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(handler), base_url="http://origin"
    ) as client:
        shared = SharedCache(client, clock)
        answers.append(_response("private, max-age=60", body="p"))
        answers.append(_response("private, max-age=60", body="p2"))
        assert (await shared.get("/a")).text == "p"
        assert (await shared.get("/a")).text == "p2"  # private: never stored

        answers.append(_response("max-age=60", vary="X-Seg", body="s1"))
        answers.append(_response("max-age=60", vary="X-Seg", body="s2"))
        assert (await shared.get("/b", {"X-Seg": "1"})).text == "s1"
        assert (await shared.get("/b", {"X-Seg": "1"})).text == "s1"  # hit
        assert (await shared.get("/b", {"X-Seg": "2"})).text == "s2"  # other variant
        assert shared.hits == 1

        answers.append(_response("max-age=60", body="auth"))
        answers.append(_response("max-age=60", body="auth2"))
        assert (await shared.get("/c", {"Authorization": "Bearer t"})).text == "auth"
        assert (await shared.get("/c")).text == "auth2"  # not stored: no public/s-maxage

        clock.advance(61)
        answers.append(_response("max-age=60", vary="X-Seg", body="s3"))
        assert (await shared.get("/b", {"X-Seg": "1"})).text == "s3"  # expired

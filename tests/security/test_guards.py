"""Request guards (rate limit, concurrency, timeout), API keys and cookie credentials with CSRF."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway.cli.main import main as cli
from gateway.security.apikeys import ApiKeyError, ApiKeyRegistry
from gateway.security.guard import GuardConfig, RequestGuard, TokenBuckets
from storage import open_store
from tests.conftest import SECRET, FakeClock
from tests.security.conftest import NORMAL_QUERY, code_of, open_gateway

ME = "{ me { id } }"


def _guarded(
    config: GuardConfig, gate: asyncio.Event | None = None, sleep: float = 0.0
) -> httpx.AsyncClient:
    cancelled: list[bool] = []

    async def slow(request: Request) -> PlainTextResponse:
        try:
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(sleep)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return PlainTextResponse("ok")

    app = RequestGuard(
        Starlette(routes=[Route("/x", slow)]), config=config, client_key=lambda s: "k"
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    client.cancelled = cancelled  # type: ignore[attr-defined]
    return client


def test_token_bucket_refills_with_time() -> None:
    clock = FakeClock(0.0)
    buckets = TokenBuckets(2.0, 3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.advance(0.5)
    assert buckets.take("a") == 0.0


async def test_rate_limit_is_per_client_with_retry_after(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0.5, rate_limit_burst=2) as gw:
        for _ in range(2):
            assert (await gw.gql(ME, user="u1")).status_code == 200
        limited = await gw.gql(ME, user="u1")
        assert limited.status_code == 429
        assert code_of(limited.json()) == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        # another subject has its own bucket; so does an anonymous caller (by IP)
        assert (await gw.gql(ME, user="u2")).status_code == 200
        assert (await gw.gql(ME)).status_code == 200
        # a forged token cannot pick a fresh bucket: it counts against the IP
        forged = {"authorization": "Bearer x.y.z"}
        assert (await gw.gql(ME, headers=forged)).status_code == 401
        assert (await gw.gql(ME, headers=forged)).status_code == 429
        # health checks are never limited
        assert (await gw.client.get("/healthz")).status_code == 200
        # trusted server-to-server callers (service/admin scope) are not rate limited
        for _ in range(5):
            assert (await gw.gql(ME, user="importer", scopes=("service",))).status_code == 200


async def test_concurrency_limit_answers_503_with_retry_after() -> None:
    gate = asyncio.Event()
    async with _guarded(GuardConfig(rate_per_s=0, max_concurrency=2, timeout_s=5), gate) as client:
        first = [asyncio.create_task(client.get("/x")) for _ in range(2)]
        await asyncio.sleep(0.05)
        busy = await client.get("/x")
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert code_of(busy.json()) == "SERVICE_UNAVAILABLE"
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*first)] == [200, 200]
        assert (await client.get("/x")).status_code == 200


async def test_timeout_answers_504_and_cancels_the_handler() -> None:
    async with _guarded(
        GuardConfig(rate_per_s=0, max_concurrency=0, timeout_s=0.05), sleep=5
    ) as client:
        r = await client.get("/x")
        assert r.status_code == 504
        assert code_of(r.json()) == "GATEWAY_TIMEOUT"
        assert client.cancelled == [True]  # type: ignore[attr-defined]


async def test_api_keys_are_scoped_hashed_and_revocable(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0) as gw:
        registry: ApiKeyRegistry = gw.app.state.runtime.apikeys
        key, plaintext = registry.create("edge-worker", ["service"])
        assert plaintext.startswith(f"tk_{key.id}_")
        secret = plaintext.split("_", 2)[2]
        raw = b"".join(p.read_bytes() for p in gw.data_dir.glob("tailor.db*"))
        assert secret.encode() not in raw  # hashed at rest
        for headers in ({"x-api-key": plaintext}, {"authorization": f"ApiKey {plaintext}"}):
            me = await gw.gql("{ me { id } }", headers=headers)
            assert me.json() == {"data": {"me": {"id": f"apikey:{key.id}"}}}
        # the service scope reads any user; a read-only key does not
        admin_q = '{ user(id: "someone") { id } }'
        assert "errors" not in (await gw.gql(admin_q, headers={"x-api-key": plaintext})).json()
        _, read_only = registry.create("dashboard", ["read"])
        denied = await gw.gql(admin_q, headers={"x-api-key": read_only})
        assert code_of(denied.json()) == "FORBIDDEN"
        assert registry.revoke(key.id) is True and registry.revoke(key.id) is False
        revoked = await gw.gql(ME, headers={"x-api-key": plaintext})
        assert revoked.status_code == 401 and code_of(revoked.json()) == "INVALID_API_KEY"
        wrong_secret = await gw.gql(ME, headers={"x-api-key": read_only[:-2] + "xx"})
        assert wrong_secret.status_code == 401
        with pytest.raises(ApiKeyError):
            registry.create("x", ["root"])


def test_apikey_cli_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert cli(["apikey", "create", "--name", "edge", "--scope", "service", *data]) == 0
    plaintext = capsys.readouterr().out.strip().splitlines()[-1]
    assert plaintext.startswith("tk_")
    key_id = plaintext.split("_")[1]
    assert cli(["apikey", "list", *data]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and plaintext.split("_", 2)[2] not in listed
    assert cli(["apikey", "revoke", key_id, *data]) == 0
    assert cli(["apikey", "revoke", key_id, *data]) == 1
    store = open_store(tmp_path / "tailor.db")
    try:
        with pytest.raises(ApiKeyError, match="revoked"):
            ApiKeyRegistry(store).verify(plaintext)
    finally:
        store.close()


async def test_cookie_credentials_work_for_non_simple_requests(tmp_path: Path) -> None:
    from gateway.security.auth import issue_token

    async with open_gateway(tmp_path / "var", auth_cookie="tt", rate_limit_per_s=0) as gw:
        cookie = {"cookie": f"tt={issue_token(SECRET, 'carol')}"}
        post = await gw.client.post("/graphql", json={"query": ME}, headers=cookie)
        assert post.json() == {"data": {"me": {"id": "carol"}}}
        get = await gw.client.get(
            "/graphql", params={"query": ME}, headers={**cookie, "x-tailor-csrf": "1"}
        )
        assert get.json() == {"data": {"me": {"id": "carol"}}}
        simple = await gw.client.get("/graphql", params={"query": ME}, headers=cookie)
        assert simple.status_code == 403 and code_of(simple.json()) == "CSRF_REJECTED"
        # without the cookie, GET stays open (CDN traffic carries no credentials)
        assert (await gw.client.get("/graphql", params={"query": NORMAL_QUERY})).status_code == 200

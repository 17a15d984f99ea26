"""The CDN purge adapters: Cloudflare's and Fastly's real purge-by-tag request shapes (method,
path, headers, body, batch limits) and the generic one, through ``POST /admin/purge`` of the app
with an httpx MockTransport standing in for the CDN."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.security.auth import issue_token
from gateway.settings import SettingsError
from tests.conftest import SECRET


@asynccontextmanager
async def app_with_cdn(
    tmp_path: Path, status: int = 200, **settings: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, list[httpx.Request]]]:
    sent: list[httpx.Request] = []

    def cdn(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, json={"success": status == 200, "id": "purge-1"})

    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        cdn_transport=httpx.MockTransport(cdn),
        rate_limit_per_s=0,
        **settings,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as c:
            yield c, sent


async def purge(c: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    token = issue_token(SECRET, "ops", scopes=["admin"])
    r = await c.post("/admin/purge", json=body, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_cloudflare_purge_by_tag(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path, cdn_purge_provider="cloudflare", cdn_purge_id="zone123", cdn_purge_token="cf-tok"
    ) as (c, sent):
        result = await purge(c, {"tags": ["item:i1", "type:Item"], "keys": ["k1"]})
        assert result["cdn"] == {"forwarded": True, "status": 200}
        (req,) = sent
        assert req.method == "POST"
        assert str(req.url) == "https://api.cloudflare.com/client/v4/zones/zone123/purge_cache"
        assert req.headers["authorization"] == "Bearer cf-tok"
        assert req.headers["content-type"] == "application/json"
        assert json.loads(req.content) == {"tags": ["item:i1", "type:Item"]}


async def test_cloudflare_batches_of_100_and_purge_everything(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path, cdn_purge_provider="cloudflare", cdn_purge_id="z", cdn_purge_token="t"
    ) as (c, sent):
        tags = [f"item:i{n}" for n in range(250)]
        result = await purge(c, {"tags": tags})
        assert result["cdn"] == {"forwarded": True, "status": 200, "requests": 3}
        bodies = [json.loads(r.content)["tags"] for r in sent]
        assert [len(b) for b in bodies] == [100, 100, 50]
        assert [t for b in bodies for t in b] == tags
        sent.clear()
        await purge(c, {"all": True})
        (req,) = sent
        assert json.loads(req.content) == {"purge_everything": True}


async def test_fastly_purge_by_surrogate_key(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path, cdn_purge_provider="fastly", cdn_purge_id="svc9", cdn_purge_token="fastly-tok"
    ) as (c, sent):
        result = await purge(c, {"tags": ["item:i1", "type:Item"]})
        assert result["cdn"] == {"forwarded": True, "status": 200}
        (req,) = sent
        assert req.method == "POST"
        assert str(req.url) == "https://api.fastly.com/service/svc9/purge"
        assert req.headers["fastly-key"] == "fastly-tok"
        assert req.headers["surrogate-key"] == "item:i1 type:Item"
        assert "authorization" not in req.headers
        assert "fastly-soft-purge" not in req.headers
        assert req.content == b""


async def test_fastly_batches_of_256_soft_purge_and_purge_all(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path,
        cdn_purge_provider="fastly",
        cdn_purge_id="svc9",
        cdn_purge_token="k",
        cdn_soft_purge=True,
        cdn_purge_url="https://fastly.proxy.internal/",
    ) as (c, sent):
        tags = [f"user:u{n}" for n in range(300)]
        result = await purge(c, {"tags": tags})
        assert result["cdn"]["requests"] == 2
        keys = [r.headers["surrogate-key"].split(" ") for r in sent]
        assert [len(k) for k in keys] == [256, 44]
        assert all(r.headers["fastly-soft-purge"] == "1" for r in sent)
        assert all(str(r.url) == "https://fastly.proxy.internal/service/svc9/purge" for r in sent)
        sent.clear()
        await purge(c, {"all": True})
        (req,) = sent
        assert str(req.url) == "https://fastly.proxy.internal/service/svc9/purge_all"
        assert req.headers["fastly-key"] == "k"


async def test_tags_a_header_cannot_carry_are_not_forwarded(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path, cdn_purge_provider="fastly", cdn_purge_id="s", cdn_purge_token="k"
    ) as (c, sent):
        await purge(c, {"tags": ["a b", "x,y", "ok:1"]})
        (req,) = sent
        assert req.headers["surrogate-key"] == "ok:1"
        sent.clear()
        result = await purge(c, {"tags": ["only bad"]})
        assert sent == []
        assert result["cdn"]["forwarded"] is False


async def test_generic_adapter_and_refusals(tmp_path: Path) -> None:
    async with app_with_cdn(
        tmp_path, status=403, cdn_purge_url="https://purge.internal/tags", cdn_purge_token="g"
    ) as (c, sent):
        result = await purge(c, {"tags": ["item:i1"], "keys": ["k1"]})
        assert result["cdn"] == {"forwarded": False, "status": 403, "requests": 1}
        (req,) = sent
        assert str(req.url) == "https://purge.internal/tags"
        assert req.headers["authorization"] == "Bearer g"
        assert json.loads(req.content) == {"tags": ["item:i1"], "keys": ["k1"]}
        sent.clear()
        await purge(c, {"all": True})
        assert json.loads(sent[0].content) == {"tags": [], "keys": [], "all": True}


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"cdn_purge_provider": "akamai"}, "cdn_purge_provider"),
        ({"cdn_purge_provider": "cloudflare", "cdn_purge_token": "t"}, "cdn_purge_id"),
        ({"cdn_purge_provider": "fastly", "cdn_purge_id": "s"}, "cdn_purge_token"),
    ],
)
async def test_incomplete_settings_name_the_setting(
    tmp_path: Path, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        async with app_with_cdn(tmp_path, **settings):
            pass

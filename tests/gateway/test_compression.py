"""Compression through the ASGI app: gzip / brotli / zstd above the threshold, Vary:
Accept-Encoding, and ETag/304 intact (a compressed answer never shares the identity's strong tag)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import brotli
import httpx
import orjson
import pytest

from catalog.importer import validate_item
from gateway.app import create_app
from tests.conftest import NOW, SECRET, FakeClock, item_rows

ITEMS_Q = "query($ids: [ID!]!) { items(ids: $ids) { id title description categories price } }"
IDS = [f"i{k}" for k in range(1, 41)]


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
        items = [validate_item(r, NOW) for r in item_rows(40)]
        app.state.services.store.upsert_items(items)
        app.state.services.catalog.update(items)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as c:
            yield c


async def raw_get(
    c: httpx.AsyncClient, encoding: str, **headers: str
) -> tuple[httpx.Response, bytes]:
    """The answer and its body exactly as sent (not decoded by httpx)."""
    params = {"query": ITEMS_Q, "variables": orjson.dumps({"ids": IDS}).decode()}
    req = c.build_request(
        "GET", "/graphql", params=params, headers={"accept-encoding": encoding, **headers}
    )
    r = await c.send(req, stream=True)
    raw = b"".join([chunk async for chunk in r.aiter_raw()])
    await r.aclose()
    return r, raw


def listed(value: str) -> set[str]:
    return {v.strip().lower() for v in value.split(",")}


DECODE = {"gzip": gzip.decompress, "br": brotli.decompress}


@pytest.mark.parametrize("encoding", ["gzip", "br"])
async def test_large_answers_are_compressed_with_a_weak_etag(tmp_path: Path, encoding: str) -> None:
    async with client(tmp_path) as c:
        plain, identity = await raw_get(c, "identity")
        assert "content-encoding" not in plain.headers
        assert len(identity) >= 1024  # above the default threshold
        strong = plain.headers["etag"]
        assert strong.startswith('"')
        packed, body = await raw_get(c, encoding)
        assert packed.status_code == 200
        assert packed.headers["content-encoding"] == encoding
        assert "accept-encoding" in listed(packed.headers["vary"])
        assert DECODE[encoding](body) == identity
        assert len(body) < len(identity) / 2
        # Not the identity's strong tag: the same validator, weak.
        assert packed.headers["etag"] == f"W/{strong}"
        assert int(packed.headers["content-length"]) == len(body)


async def test_zstd_is_preferred_when_offered(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        r, _ = await raw_get(c, "gzip, br, zstd")
        assert r.headers["content-encoding"] == "zstd"


async def test_revalidation_still_gets_304(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        packed, _ = await raw_get(c, "gzip")
        weak = packed.headers["etag"]
        again, body = await raw_get(c, "gzip", **{"if-none-match": weak})
        assert again.status_code == 304
        assert body == b""
        assert again.headers["etag"] == weak  # the tag the client holds
        assert "accept-encoding" in listed(again.headers["vary"])
        # An identity client revalidating its strong tag: 304 with that strong tag.
        plain, _ = await raw_get(c, "identity")
        strong = plain.headers["etag"]
        same, _ = await raw_get(c, "identity", **{"if-none-match": strong})
        assert same.status_code == 304
        assert same.headers["etag"] == strong
        # A stale tag is not a match.
        other, _ = await raw_get(c, "gzip", **{"if-none-match": 'W/"not-it"'})
        assert other.status_code == 200


async def test_small_answers_are_sent_as_they_are(tmp_path: Path) -> None:
    async with client(tmp_path) as c:
        r = await c.get(
            "/graphql",
            params={"query": "{ trending(first: 1) { score } }"},
            headers={"accept-encoding": "gzip"},
        )
        assert r.status_code == 200
        assert "content-encoding" not in r.headers
        assert r.headers["etag"].startswith('"')


async def test_compression_can_be_turned_off(tmp_path: Path) -> None:
    async with client(tmp_path, compression=False) as c:
        r, _ = await raw_get(c, "gzip, br")
        assert "content-encoding" not in r.headers
        assert r.headers["etag"].startswith('"')


async def test_the_threshold_is_a_setting(tmp_path: Path) -> None:
    async with client(tmp_path, compress_min_bytes=100_000) as c:
        r, _ = await raw_get(c, "gzip")
        assert "content-encoding" not in r.headers

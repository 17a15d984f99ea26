"""Helpers for the security suite: a gateway factory, seed data, and a fingerprint of the store."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from storage.types import ItemRecord
from tests.conftest import SECRET, FakeClock, Gateway

_ids = itertools.count()
TABLES = ("items", "users", "events", "identities", "profiles", "api_keys")
NORMAL_QUERY = "{ trending(first: 3) { item { id title } score } }"


@contextlib.asynccontextmanager
async def open_gateway(
    data_dir: Path, clock: FakeClock | None = None, **overrides: Any
) -> AsyncIterator[Gateway]:
    """The real app on a real SQLite file, driven in-process over httpx."""
    clock = clock or FakeClock()
    app = create_app(data_dir=data_dir, jwt_secret=SECRET, clock=clock, **overrides)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, data_dir)


async def seed(gw: Gateway) -> None:
    """Items i1..i5; alice (with e-mail and an anonymous history linked to her) and bob."""
    store = gw.services.store
    store.upsert_items(
        [
            ItemRecord(
                f"i{k}",
                f"Item {k}",
                f"fine item {k}",
                ("Shoes",),
                created_at=gw.clock.now,
                updated_at=gw.clock.now,
            )
            for k in range(1, 6)
        ]
    )
    await track(gw, "alice", [("view", "i1"), ("click", "i2"), ("purchase", "i2")])
    await track(gw, "bob", [("view", "i3")])
    anon = {"x-anonymous-id": "anon-alice"}
    r = await gw.client.post(
        "/v1/events",
        json=[{"messageId": "anon-1", "type": "view", "itemId": "i4", "timestamp": gw.clock.now}],
        headers=anon,
    )
    assert r.status_code == 200, r.text
    r = await gw.gql(
        'mutation { identify(anonymousId: "anon-alice", traits: {email: "Alice@Example.org", plan: "gold"}) { status } }',
        user="alice",
        headers=anon,
    )
    assert r.status_code == 200 and "errors" not in r.json(), r.text


async def track(
    gw: Gateway, user: str, events: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> httpx.Response:
    body = [
        {
            "messageId": f"{user}-{next(_ids)}",
            "type": t,
            "itemId": item,
            "timestamp": gw.clock.now,
            **({"properties": {"price": 10.0}} if t == "purchase" else {}),
        }
        for t, item in events
    ]
    h = {"authorization": f"Bearer {gw.token(user)}", **(headers or {})}
    return await gw.client.post("/v1/events", json=body, headers=h)


def fingerprint(gw: Gateway) -> dict[str, str]:
    """A digest of every row of every table: equal fingerprints mean no data changed."""
    conn = gw.services.store._reader()
    out = {}
    for table in TABLES:
        h = hashlib.sha256()
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
            h.update(repr(row).encode())
        out[table] = h.hexdigest()
    return out


def code_of(body: Any) -> str | None:
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        return None
    return (errors[0].get("extensions") or {}).get("code")

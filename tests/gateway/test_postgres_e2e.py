"""The whole gateway on PostgreSQL: ``create_app(database_url=…)`` in-process over httpx.

Events POSTed to ``/v1/events`` are answered after their COMMIT in PostgreSQL; ``me { profile }``
and recommendations answer from it; a second app on the same database (another process, or a
restart) sees the same state; nothing is written to a SQLite file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from catalog.importer import validate_item
from gateway.app import create_app
from storage.types import StoreUnavailable
from tests.conftest import NOW, SECRET, FakeClock, Gateway, item_rows
from tests.pg import create_database, database_url, drop_database, pg_empty, pg_url

__all__ = ["pg_empty", "pg_url"]

PROFILE = "{ me { profile { events views7d topCategories { category } } } }"
RECS = """query($s: Strategy) { me { recommendations(first: 3, strategy: $s) {
  item { id } source } } }"""


@asynccontextmanager
async def gateway_on(url: str, data_dir: Path, clock: FakeClock) -> AsyncIterator[Gateway]:
    app = create_app(
        data_dir=data_dir, jwt_secret=SECRET, encoder="hashing", clock=clock, database_url=url
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, data_dir)


def view(mid: str, user: str, item: str, etype: str = "view") -> dict[str, Any]:
    return {
        "messageId": mid,
        "type": etype,
        "userId": user,
        "itemId": item,
        "timestamp": (NOW - 60) * 1000,
        **({"properties": {"price": 12.0, "quantity": 1}} if etype == "purchase" else {}),
    }


def rows_in(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return 0 if row is None else int(row[0])


async def test_events_profile_and_recommendations_on_postgres(
    pg_empty: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    data_dir = tmp_path / "var"
    async with gateway_on(pg_empty, data_dir, clock) as gw:
        items = [validate_item(r, NOW) for r in item_rows(6)]  # i1..i6: Dresses, Bags, Shoes, …
        gw.services.store.upsert_items(items)
        gw.services.catalog.update(items)
        service = {"authorization": f"Bearer {gw.token('collector', 'service')}"}
        events = [view(f"v{n}", "u1", "i3") for n in range(3)] + [
            view(f"p{n}", f"buyer{n}", "i5", "purchase") for n in range(4)
        ]
        r = await gw.client.post("/v1/events", json=events, headers=service)
        assert r.status_code == 200 and r.json()["accepted"] == 7
        # Acknowledged means committed: another connection sees every row already.
        assert rows_in(pg_empty, "events") == 7
        again = await gw.client.post("/v1/events", json=events[:2], headers=service)
        assert again.json()["accepted"] == 0 and rows_in(pg_empty, "events") == 7

        profile = (await gw.gql(PROFILE, user="u1")).json()
        assert profile["data"]["me"]["profile"] == {
            "events": 3,
            "views7d": 3,
            "topCategories": [{"category": "Shoes"}],
        }
        trending = (await gw.gql(RECS, {"s": "TRENDING"}, user="u1")).json()
        assert "errors" not in trending, trending
        assert trending["data"]["me"]["recommendations"][0]["item"]["id"] == "i5"
        hybrid = (await gw.gql(RECS, {"s": "HYBRID"}, user="u1")).json()
        assert "errors" not in hybrid, hybrid
        assert len(hybrid["data"]["me"]["recommendations"]) == 3
        ready = await gw.client.get("/readyz")
        assert ready.json()["checks"]["store"] is True

    # Another app on the same database (a restart, or another instance) answers the same.
    async with gateway_on(pg_empty, tmp_path / "other", clock) as other:
        profile = (await other.gql(PROFILE, user="u1")).json()
        assert profile["data"]["me"]["profile"]["events"] == 3
        forget = await other.gql("mutation { forgetMe { userId } }", user="u1")
        assert "errors" not in forget.json(), forget.json()
    assert rows_in(pg_empty, "events") == 4 and rows_in(pg_empty, "erasures") == 1
    assert not (data_dir / "tailor.db").exists()  # the store is PostgreSQL only


async def test_an_unreachable_database_fails_start_up_clearly(tmp_path: Path) -> None:
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        database_url="postgresql://postgres:pw@127.0.0.1:1/tailor",
        database_connect_timeout_s=1.0,
    )
    with pytest.raises(StoreUnavailable) as info:
        async with app.router.lifespan_context(app):
            pass
    message = str(info.value)
    assert "cannot connect to PostgreSQL" in message and "TAILOR_DATABASE_URL" in message
    assert "pw@" not in message


async def test_readyz_reports_a_lost_database(tmp_path: Path) -> None:
    name = create_database("tailor_test_lost_")
    try:
        async with gateway_on(database_url(name), tmp_path / "var", FakeClock()) as gw:
            assert (await gw.client.get("/readyz")).json()["checks"]["store"] is True
            drop_database(name)  # terminates the pool's connections too
            ready = await gw.client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["store"] is False
    finally:
        drop_database(name)

"""``create_app(freeze_heap=True)`` (what ``tailor serve`` runs): the start-up heap is frozen
while the app serves, and given back to the collector on shutdown."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx

from gateway.app import create_app
from tests.conftest import SECRET, FakeClock


async def test_start_up_heap_frozen_while_serving(tmp_path: Path) -> None:
    gc.unfreeze()
    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=FakeClock(),
        freeze_heap=True,
    )
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        # The app's own objects are among the frozen ones.
        assert frozen > 10_000
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.post(
                "/v1/events",
                json=[{"messageId": "m1", "type": "view", "anonymousId": "a1", "itemId": "i1"}],
                headers={"x-anonymous-id": "a1"},
            )
            assert r.status_code == 200 and r.json()["accepted"] == 1
    assert gc.get_freeze_count() == 0


async def test_off_by_default(tmp_path: Path) -> None:
    gc.unfreeze()
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing")
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0

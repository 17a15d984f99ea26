"""Operations: readiness names the dependency that is down; shutdown drains the ingest queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gateway.app import create_app
from tests.conftest import SECRET, FakeClock, Gateway


async def test_readyz_names_what_is_down(gateway: Gateway) -> None:
    ready = (await gateway.client.get("/readyz")).json()
    assert ready["status"] == "ready" and ready["down"] == []
    gateway.services.ingest.stop()
    r = await gateway.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["down"] == ["ingest_writer"]
    assert r.json()["checks"]["ingest_writer"] is False


async def test_shutdown_drains_the_ingest_queue(tmp_path: Path) -> None:
    app = create_app(
        data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing", clock=FakeClock()
    )
    async with app.router.lifespan_context(app):
        services = app.state.services
        # Batches queued behind the writer when shutdown begins are committed, not dropped.
        pending = [
            asyncio.ensure_future(
                services.ingest.ingest(
                    [{"messageId": f"m{n}", "type": "view", "userId": f"u{n}", "itemId": "i1"}]
                )
            )
            for n in range(50)
        ]
        await asyncio.sleep(0)  # each task validates and queues its batch
    results = await asyncio.gather(*pending)
    assert all(r.count("accepted") == 1 for r in results)
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing")
    async with app.router.lifespan_context(app):
        assert app.state.services.store.count_events() == 50
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            assert (await c.get("/readyz")).json()["down"] == []

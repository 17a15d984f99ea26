"""``index_build_on_start``: a gateway that does not build the item index itself serves at once,
reports the index as warming, and swaps it in when another process stores one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.cli.main import main
from tests.conftest import SECRET

SEARCH = '{ search(text: "linen dress", first: 3, personalized: false) { item { id } } }'


def _items(path: Path, n: int = 30) -> Path:
    rows = [
        {"id": f"i{k}", "title": f"Linen dress {k}", "categories": ["Dresses"], "price": 10 + k}
        for k in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def _wait_for_index(client: httpx.AsyncClient, timeout_s: float = 20.0) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        ready: dict[str, object] = (await client.get("/readyz")).json()
        if "warming" not in ready:
            return ready
        assert asyncio.get_running_loop().time() < deadline, ready
        await asyncio.sleep(0.1)


async def test_without_building_it_serves_warming_then_swaps_the_stored_index_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "var"
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    assert (
        main(["import", "items", str(_items(tmp_path / "items.jsonl")), "--data-dir", str(data)])
        == 0
    )
    app = create_app(
        data_dir=data,
        jwt_secret=SECRET,
        encoder="hashing",
        index_build_on_start=False,
        model_poll_s=0.1,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            body = ready.json()
            assert body["status"] == "ready"
            assert body["warming"] == ["item_index"]
            assert body["models"]["item_index"] is None
            # Answers that need no index are served; search says plainly why it cannot.
            trending = await client.post(
                "/graphql", json={"query": "{ trending(first: 3) { score } }"}
            )
            assert "errors" not in trending.json()
            search = (await client.post("/graphql", json={"query": SEARCH})).json()
            assert search["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
            assert "item index is not built" in search["errors"][0]["message"]
            # Still not built by the gateway itself, however many polls pass.
            await asyncio.sleep(0.5)
            assert (await client.get("/readyz")).json()["models"]["item_index"] is None

            # Another process builds and stores it; the poller swaps it in.
            assert main(["train", "index", "--data-dir", str(data)]) == 0
            ready_after = await _wait_for_index(client)
            assert ready_after["models"]["item_index"] is not None  # type: ignore[index]
            found = (await client.post("/graphql", json={"query": SEARCH})).json()
            assert "errors" not in found
            assert len(found["data"]["search"]) == 3


async def test_by_default_a_gateway_builds_the_missing_index_before_it_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "var"
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    assert (
        main(["import", "items", str(_items(tmp_path / "items.jsonl")), "--data-dir", str(data)])
        == 0
    )
    app = create_app(data_dir=data, jwt_secret=SECRET, encoder="hashing")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            body = (await client.get("/readyz")).json()
            assert "warming" not in body
            assert body["models"]["item_index"] is not None


async def test_an_unusable_stored_index_is_reported_once_and_a_newer_one_is_swapped_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "var"
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    items = str(_items(tmp_path / "items.jsonl"))
    assert main(["import", "items", items, "--data-dir", str(data)]) == 0
    assert main(["train", "index", "--data-dir", str(data)]) == 0
    (manifest,) = [p for p in data.rglob("manifest.json") if "index" in p.parts]
    manifest.write_text("{ not json")
    app = create_app(
        data_dir=data,
        jwt_secret=SECRET,
        encoder="hashing",
        index_build_on_start=False,
        model_poll_s=0.05,
    )
    caplog.set_level("WARNING", logger="tailor.models")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            body = (await client.get("/readyz")).json()
            assert body["warming"] == ["item_index"]
            await asyncio.sleep(0.6)  # about ten polls
            unusable = [r for r in caplog.records if "stored index not usable" in r.getMessage()]
            assert len(unusable) == 1, [r.getMessage() for r in unusable]
            assert "cannot read manifest" in unusable[0].getMessage()
            # A newer stored version is tried, and served.
            assert main(["train", "index", "--data-dir", str(data)]) == 0
            ready = await _wait_for_index(client)
            assert ready["models"]["item_index"] is not None  # type: ignore[index]
            found = (await client.post("/graphql", json={"query": SEARCH})).json()
            assert len(found["data"]["search"]) == 3

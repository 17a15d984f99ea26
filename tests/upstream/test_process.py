"""Against a real upstream service process on loopback, with fault injection: added latency,
500s, connection refused, malformed JSON, a body that stalls halfway; and `tailor sync`
resuming after a failure mid-way."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.main import main
from storage import open_store
from tests.conftest import FakeClock, Gateway
from tests.upstream.conftest import BASE_TS, UpstreamProcess, free_port, open_gateway

ITEMS = "query($ids: [ID!]!) { items(ids: $ids) { id title } }"
ONE = "query($id: ID!) { item(id: $id) { id title } }"


@pytest.fixture
async def gw(tmp_path: Path, clock: FakeClock, upstream: UpstreamProcess) -> AsyncIterator[Gateway]:
    async for g in open_gateway(
        tmp_path, clock, upstream_catalog_url=upstream.url, upstream_crm_url=upstream.url
    ):
        yield g


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


async def test_100_items_are_one_request_over_real_http(
    gw: Gateway, upstream: UpstreamProcess
) -> None:
    ids = [f"u{k}" for k in range(1, 101)]
    body = (await gw.gql(ITEMS, {"ids": ids})).json()
    assert [it["id"] for it in body["data"]["items"]] == ids
    assert upstream.stats()["by_kind"]["items"] == 1


async def test_added_latency_within_timeouts_is_fine_beyond_is_unavailable(
    gw: Gateway, upstream: UpstreamProcess
) -> None:
    upstream.faults(latency_ms=50)
    assert (await gw.gql(ONE, {"id": "u1"})).json()["data"]["item"]["title"] == "Upstream item 1"
    upstream.faults(latency_ms=2000)  # read timeout 0.5 s, budget 1 s per call
    started = time.monotonic()
    body = (await gw.gql(ONE, {"id": "u2"})).json()
    # Waiting the 2 s out would have answered the item; UPSTREAM_UNAVAILABLE (below) shows the
    # timeouts cut it. The wall-clock bound only rules out a hang, generous for loaded machines.
    assert time.monotonic() - started < 10
    assert body["data"]["item"] is None and code(body) == "UPSTREAM_UNAVAILABLE"


async def test_500s_are_retried_then_served_stale(
    gw: Gateway, upstream: UpstreamProcess, clock: FakeClock
) -> None:
    upstream.faults(status=500, fail_next=2)
    body = (await gw.gql(ONE, {"id": "u3"})).json()
    assert body["data"]["item"]["title"] == "Upstream item 3"
    assert upstream.stats()["requests"] == 3  # two 500s, then the answer
    upstream.faults(status=500, fail_next=0)  # down for good
    clock.advance(120)  # stale, inside stale-if-error
    # u3 is served stale; u4 was never seen: only its field is null, with the code.
    body = (await gw.gql('{ a: item(id: "u3") { title } b: item(id: "u4") { title } }')).json()
    assert body["data"] == {"a": {"title": "Upstream item 3"}, "b": None}
    assert [e["path"] for e in body["errors"]] == [["b"]] and code(body) == "UPSTREAM_UNAVAILABLE"


async def test_connection_refused_opens_the_breaker(tmp_path: Path, clock: FakeClock) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    # Timeouts of 30-60 s: waiting any of them out would show; a refusal takes milliseconds
    # (the bound is generous: wall clock on a possibly loaded machine).
    slow_timeouts = dict(
        upstream_connect_timeout_s=30.0,
        upstream_read_timeout_s=30.0,
        upstream_total_timeout_s=60.0,
    )
    async for g in open_gateway(tmp_path, clock, upstream_catalog_url=dead, **slow_timeouts):
        started = time.monotonic()
        body = (await g.gql(ONE, {"id": "u1"})).json()
        assert code(body) == "UPSTREAM_UNAVAILABLE"
        assert time.monotonic() - started < 10  # refused at once; no timeout to wait out
        ready = (await g.client.get("/readyz")).json()
        assert ready["upstreams"]["catalog"]["state"] == "open"  # 3 attempts = 3 failures
        attempts = ready["upstreams"]["catalog"]["attempts"]
        body = (await g.gql(ONE, {"id": "u2"})).json()
        assert code(body) == "UPSTREAM_UNAVAILABLE"
        assert (await g.client.get("/readyz")).json()["upstreams"]["catalog"][
            "attempts"
        ] == attempts


async def test_malformed_json_is_logged_and_never_reaches_the_client(
    gw: Gateway, upstream: UpstreamProcess, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.faults(malformed=True)
    with caplog.at_level(logging.ERROR, logger="tailor.upstream"):
        body = (await gw.gql(ONE, {"id": "u5"})).json()
    assert body["data"]["item"] is None and code(body) == "UPSTREAM_UNAVAILABLE"
    assert "malformed JSON from GET /items" in caplog.text
    assert upstream.stats()["requests"] == 1  # a payload error is not retried


async def test_invalid_rows_fail_only_their_item(
    gw: Gateway, upstream: UpstreamProcess, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.faults(bad_rows=["u7"])
    with caplog.at_level(logging.ERROR, logger="tailor.upstream"):
        body = (await gw.gql('{ a: item(id: "u6") { title } b: item(id: "u7") { title } }')).json()
    assert body["data"] == {"a": {"title": "Upstream item 6"}, "b": None}
    assert body["errors"][0]["path"] == ["b"] and code(body) == "UPSTREAM_UNAVAILABLE"
    assert "invalid row in GET /items (id 'u7')" in caplog.text


async def test_a_body_that_stalls_halfway_times_out(gw: Gateway, upstream: UpstreamProcess) -> None:
    upstream.faults(stall=True)
    started = time.monotonic()
    body = (await gw.gql(ONE, {"id": "u8"})).json()
    # The 1 s call budget, not the server's hour (a generous wall-clock bound: loaded machines).
    assert time.monotonic() - started < 30
    assert body["data"]["item"] is None and code(body) == "UPSTREAM_UNAVAILABLE"


def test_sync_resumes_after_a_failure_and_then_pulls_only_changes(
    tmp_path: Path,
    upstream: UpstreamProcess,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TAILOR_UPSTREAM_CATALOG_URL", upstream.url)
    monkeypatch.setenv("TAILOR_UPSTREAM_SYNC_PAGE_SIZE", "50")
    monkeypatch.setenv("TAILOR_UPSTREAM_RETRIES", "0")
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    data = tmp_path / "var"
    # 250 items, 50 a page: page 3 fails (as a crash would end the run after page 2).
    upstream.faults(fail_cursor=f"{BASE_TS + 100!r}|u100")
    assert main(["sync", "items", "--data-dir", str(data)]) == 1
    assert "2 pages, 100 written" in capsys.readouterr().err
    upstream.reset()
    assert main(["sync", "items", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().err
    assert "3 pages, 150 written" in out and "resumed" in out
    queries = upstream.stats()["queries"]
    assert queries[0] == f"items?limit=50&cursor={BASE_TS + 100!r}%7Cu100"  # not from the start
    store = open_store(data / "tailor.db")
    try:
        assert store.count_items() == 250
    finally:
        store.close()
    # Incremental: only what changed since the last run (the boundary second is re-read).
    upstream.put(items=[{"id": "z1", "title": "New", "updated_at": BASE_TS + 1000}])
    assert main(["sync", "items", "--data-dir", str(data)]) == 0
    assert "1 pages, 2 written" in capsys.readouterr().err
    store = open_store(data / "tailor.db")
    try:
        assert store.get_items(["z1"])["z1"].title == "New"
    finally:
        store.close()


def test_sync_users_keeps_local_consent_and_hashes_pii(
    tmp_path: Path,
    upstream: UpstreamProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from storage.types import UserRecord

    monkeypatch.setenv("TAILOR_UPSTREAM_CRM_URL", upstream.url)
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    data = tmp_path / "var"
    store = open_store(data / "tailor.db")
    store.upsert_users([UserRecord("c1", {}, False, False, 0.0)])  # c1 opted out locally
    store.close()
    assert main(["sync", "users", "--data-dir", str(data)]) == 0
    store = open_store(data / "tailor.db")
    try:
        assert store.count_users() == 20
        c1 = store.get_user("c1")
        assert c1 is not None and not c1.consent_personalization and not c1.consent_tracking
        assert c1.traits["tier"] == "gold" and c1.traits["email"].startswith("hmac-sha256:")
    finally:
        store.close()


async def test_serve_runs_sync_on_an_interval(
    tmp_path: Path, clock: FakeClock, upstream: UpstreamProcess
) -> None:
    import asyncio

    async for g in open_gateway(
        tmp_path,
        clock,
        upstream_catalog_url=upstream.url,
        upstream_sync_interval_s=3600,
        upstream_sync_page_size=100,
    ):
        for _ in range(200):  # the first run starts with the app
            if g.services.store.count_items() >= 250:
                break
            await asyncio.sleep(0.02)
        assert g.services.store.count_items() >= 250
        assert g.services.catalog.item("u42") is not None  # the in-memory catalog follows
        assert upstream.stats()["by_kind"]["items"] >= 3  # 250 items in pages of 100

"""The event stream: the EventStream conformance suite (NATS JetStream and the in-process double),
and the gateway on the stream in-process (acknowledged after the stream's ack, same validation
answers, effectively-once profiles, lag in /readyz, a stream that is down, the CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app
from gateway.cli.main import main
from gateway.security.auth import issue_token
from gateway.settings import SettingsError, load_settings
from storage.stream import (
    MAX_MESSAGE_BYTES,
    Applied,
    EventStream,
    MemoryEventStream,
    StreamUnavailable,
    decode_events,
    encode_applied,
    encode_events,
)
from storage.types import EventRecord
from tests.conftest import SECRET
from tests.fleet.conftest import StreamNames, free_port


def record(n: int, user: str = "u1", **extra: Any) -> EventRecord:
    return EventRecord(
        message_id=f"m{n}",
        type="view",
        profile_key=user,
        ts=1_767_225_600.0 + n,
        received_at=1_767_225_600.0 + n,
        payload_hash=f"h{n}",
        user_id=user,
        item_id=f"i{n % 5}",
        properties={"n": n, **extra},
    )


# ---------------------------------------------------------------------- conformance
@pytest.fixture(params=["nats", "memory"])
async def stream(
    request: pytest.FixtureRequest, stream_names: StreamNames
) -> AsyncIterator[EventStream]:
    s: EventStream = (
        stream_names.open(ack_wait_s=1.0)
        if request.param == "nats"
        else MemoryEventStream(ack_wait_s=1.0)
    )
    try:
        yield s
    finally:
        await s.close()


async def fetch_all(stream: EventStream, n_events: int, timeout_s: float = 5.0) -> list[Any]:
    out: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while sum(len(d.events) for d in out) < n_events:
        assert asyncio.get_running_loop().time() < deadline, "deliveries did not arrive"
        out.extend(await stream.fetch(10, 0.5))
    return out


async def test_published_events_come_back_whole_and_in_order(stream: EventStream) -> None:
    events = [record(n) for n in range(5)]
    await stream.publish(events)
    deliveries = await fetch_all(stream, 5)
    assert [ev for d in deliveries for ev in d.events] == events
    assert all(d.attempt == 1 for d in deliveries)
    await stream.ack(deliveries)


async def test_a_large_batch_is_split_into_bounded_messages(stream: EventStream) -> None:
    events = [record(n, blob="x" * 2000) for n in range(400)]  # ~1 MB of events
    messages = encode_events(events)
    assert len(messages) > 1 and all(len(m) <= MAX_MESSAGE_BYTES + 4096 for m in messages)
    assert [ev for m in messages for ev in decode_events(m)] == events
    await stream.publish(events)
    deliveries = await fetch_all(stream, 400)
    assert [ev.message_id for d in deliveries for ev in d.events] == [e.message_id for e in events]
    await stream.ack(deliveries)


async def test_a_fetch_returns_what_is_ready_without_waiting_out_its_timeout(
    stream: EventStream,
) -> None:
    for n in range(3):
        await stream.publish([record(n)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = await stream.fetch(64, 10.0)  # fewer than asked for are there
    assert len(first) == 3 and loop.time() - started < 2.0
    await stream.ack(first)
    # Nothing ready: the fetch waits for the first message and returns with it.
    later = asyncio.create_task(stream.fetch(64, 10.0))
    await asyncio.sleep(0.3)
    started = loop.time()
    await stream.publish([record(9)])
    second = await asyncio.wait_for(later, 5)
    assert [d.events[0].message_id for d in second] == ["m9"] and loop.time() - started < 2.0
    await stream.ack(second)


async def test_unacknowledged_deliveries_come_back_and_acknowledged_ones_do_not(
    stream: EventStream,
) -> None:
    await stream.publish([record(1)])
    await stream.publish([record(2)])
    first = await fetch_all(stream, 2)
    acked = [d for d in first if d.events[0].message_id == "m1"]
    await stream.ack(acked)
    lag = await stream.lag()
    assert lag.pending == 0 and lag.in_flight == 1
    await asyncio.sleep(1.2)  # past the ack wait
    again = await fetch_all(stream, 1)
    assert [d.events[0].message_id for d in again] == ["m2"]
    assert again[0].attempt == 2
    await stream.ack(again)
    assert await stream.fetch(10, 1.5) == []  # nothing comes back after the ack
    assert (await stream.lag()).total == 0


async def test_lag_counts_what_is_not_applied(stream: EventStream) -> None:
    for n in range(3):
        await stream.publish([record(n)])
    lag = await stream.lag()
    assert (lag.pending, lag.in_flight, lag.total) == (3, 0, 3)
    deliveries = await fetch_all(stream, 3)
    assert (await stream.lag()).in_flight == 3
    await stream.ack(deliveries)
    assert (await stream.lag()).total == 0


async def test_tail_sees_notes_announced_after_it_started(stream: EventStream) -> None:
    await stream.announce(Applied("a", [record(0)], ["u1"]))
    notes = await stream.tail()
    await stream.announce(Applied("b", [record(1)], ["u1", "anon:x"]))
    note = await asyncio.wait_for(anext(notes), 5)
    assert note == Applied("b", [record(1)], ["u1", "anon:x"])
    await notes.aclose()  # type: ignore[attr-defined]


async def test_a_large_note_arrives_whole_in_order_with_its_profiles_once(
    stream: EventStream,
) -> None:
    notes = await stream.tail()
    events = [record(n, user=f"u{n % 7}", blob="y" * 2000) for n in range(300)]  # ~700 KB
    keys = [f"u{n}" for n in range(7)]
    assert len(encode_applied(Applied("a", events, keys))) > 1
    await stream.announce(Applied("a", events, keys))
    got: list[Applied] = []
    while sum(len(n.events) for n in got) < len(events):
        got.append(await asyncio.wait_for(anext(notes), 5))
    assert [ev for n in got for ev in n.events] == events
    assert got[0].profile_keys == keys and all(n.profile_keys == [] for n in got[1:])
    assert {n.origin for n in got} == {"a"}
    await notes.aclose()  # type: ignore[attr-defined]


def test_the_wire_format_is_the_records_fields() -> None:
    ev = record(3, price=1.5)
    (message,) = encode_events([ev])
    doc = json.loads(message)
    assert doc == {
        "v": 1,
        "events": [{**dataclasses.asdict(ev), "properties": dict(ev.properties)}],
    }
    (note,) = encode_applied(Applied("o", [], ["k"]))
    assert json.loads(note) == {"v": 1, "origin": "o", "events": [], "profiles": ["k"]}
    frozen = dataclasses.replace(ev, properties=MappingProxyType({"a": 1}))
    assert decode_events(encode_events([frozen])[0])[0].properties == {"a": 1}


async def test_an_unreachable_stream_raises_stream_unavailable() -> None:
    from storage.nats_stream import NatsEventStream

    s = NatsEventStream(f"nats://127.0.0.1:{free_port()}", stream="NOPE")
    with pytest.raises(StreamUnavailable, match="unreachable"):
        await s.publish([record(1)])
    await s.close()


# ---------------------------------------------------------------------- the gateway on the stream
Client = Callable[..., Awaitable[httpx.Response]]


async def _app(tmp: Path, **settings: Any) -> Any:
    return create_app(data_dir=tmp, jwt_secret=SECRET, encoder="hashing", **settings)


SERVICE = {"authorization": f"Bearer {issue_token(SECRET, 'svc', scopes=['service'])}"}
BATCH = [
    {"messageId": "e1", "type": "view", "userId": "u1", "itemId": "i1"},
    {"type": "view", "userId": "u1"},  # no messageId
    {"messageId": "e2", "type": "teleport", "userId": "u1"},  # unknown type
    {"messageId": "e3", "type": "purchase", "userId": "u2", "itemId": "i2"},
]


async def _post(app: Any, body: Any, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.post("/v1/events", json=body, headers=SERVICE, **kw)


async def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_the_stream_answers_like_direct_ingestion_and_applies_once(
    tmp_path: Path, stream_names: StreamNames
) -> None:
    direct = await _app(tmp_path / "direct")
    async with direct.router.lifespan_context(direct):
        expected = await _post(direct, BATCH)
        too_big = await _post(direct, [BATCH[0]] * 1001)
    app = await _app(tmp_path / "stream", **stream_names.settings())
    async with app.router.lifespan_context(app):
        store = app.state.services.store
        r = await _post(app, BATCH)
        # The same answer, per event, as the direct path (status code, statuses, reasons).
        assert (r.status_code, r.json()) == (expected.status_code, expected.json())
        big = await _post(app, [BATCH[0]] * 1001)
        assert (big.status_code, big.json()) == (too_big.status_code, too_big.json()) != (200,)
        await _until(lambda: store.count_events() == 2)
        # A replay of the same messageIds (a client retry) is accepted and applied once.
        again = await _post(app, BATCH)
        assert again.json()["accepted"] == 2
        lag = stream_names.open()
        try:
            await _until(lambda: app.state.runtime.stream.consumer.stats.duplicates == 2)
            assert (await lag.lag()).total == 0
        finally:
            await lag.close()
        assert store.count_events() == 2
        state = store.get_profile_state("u1")
        assert state is not None and state["counts"] == {"view": 1}
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        ready = (await client.get("/readyz")).json()
        scraped = {
            (sample.name, sample.labels.get("kind")): sample.value
            for family in text_string_to_metric_families((await client.get("/metrics")).text)
            for sample in family.samples
        }
        assert scraped[("tailor_event_stream_up", None)] == 1.0
        assert scraped[("tailor_event_stream_lag", "pending")] == 0.0
        assert ready["checks"]["event_stream"] is True
        report = ready["event_stream"]
        assert report["stream"] == stream_names.stream and report["lag"] == 0
        assert report["inline_consumer"] is True and report["applied_here"] == 2


async def test_graphql_track_goes_through_the_stream(
    tmp_path: Path, stream_names: StreamNames
) -> None:
    app = await _app(tmp_path, **stream_names.settings())
    track = "mutation($e: [EventInput!]!) { track(events: $e) { accepted rejected } }"
    token = issue_token(SECRET, "u7")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            events = [{"messageId": "t1", "type": "view", "itemId": "i1", "sessionId": "s"}]
            r = await c.post(
                "/graphql",
                json={"query": track, "variables": {"e": events}},
                headers={"authorization": f"Bearer {token}"},
            )
            assert r.json()["data"]["track"] == {"accepted": 1, "rejected": 0}
            probe = stream_names.open()
            try:
                assert (await probe.lag()).last_sequence >= 1  # it went through the stream
            finally:
                await probe.close()

            async def profile_events() -> Any:
                q = {"query": "{ me { profile { events } } }"}
                p = await c.post("/graphql", json=q, headers={"authorization": f"Bearer {token}"})
                return (p.json()["data"]["me"]["profile"] or {}).get("events")

            for _ in range(100):
                if await profile_events() == 1:
                    break
                await asyncio.sleep(0.05)
            assert await profile_events() == 1


async def test_a_stream_that_is_down_answers_503_and_is_not_ready(tmp_path: Path) -> None:
    app = await _app(
        tmp_path, event_stream_url=f"nats://127.0.0.1:{free_port()}", event_stream_name="DOWN"
    )
    async with app.router.lifespan_context(app):
        r = await _post(app, BATCH[:1])
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert app.state.services.store.count_events() == 0
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            ready = await c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["event_stream"]["reachable"] is False


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("event_stream_url", "redis://127.0.0.1:6379", "nats://"),
        ("event_stream_name", "a.b", "without spaces"),
        ("event_stream_subject", "tailor.>", "NATS subject"),
        ("event_stream_ack_wait_s", "0", "must be positive"),
    ],
)
def test_bad_stream_settings_are_refused_by_name(setting: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as exc:
        load_settings(environ={f"TAILOR_{setting.upper()}": value})
    assert setting in str(exc.value)


# ---------------------------------------------------------------------- the CLI
def test_serve_refuses_several_workers_on_the_embedded_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--workers", "2", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "refusing --workers 2" in err and "rate limit" in err
    assert "TAILOR_EVENT_STREAM_URL" in err and "TAILOR_REDIS_URL" in err
    assert not (tmp_path / "tailor.db").exists()  # refused before anything was opened


def test_worker_needs_the_stream(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "--data-dir", str(tmp_path)]) == 2
    assert "TAILOR_EVENT_STREAM_URL" in capsys.readouterr().err


async def test_worker_status_prints_the_lag(
    stream_names: StreamNames, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = stream_names.open()
    try:
        await s.publish([record(1)])
        await s.publish([record(2)])
    finally:
        await s.close()
    for key, value in stream_names.env().items():
        monkeypatch.setenv(key, value)
    code = await asyncio.to_thread(main, ["worker", "--status"])
    assert code == 0
    status = json.loads(capsys.readouterr().out)
    assert status["reachable"] is True and status["consumer"] == stream_names.consumer
    assert status["pending"] == 2 and status["lag"] == 2

"""Two real `tailor serve` processes on different ports sharing the store and the event stream:
an event accepted by A changes what B answers within a bounded delay (read-your-writes across
instances, through B's own caches), and both answer the same trending list."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from catalog.importer import validate_item
from storage import open_store
from tests.conftest import NOW, item_rows
from tests.fleet.conftest import delete_stream, free_port, new_stream_names
from tests.fleet.processes import converged, gql, launch, ready, service_headers, stop

READ_YOUR_WRITES_BOUND_S = 5.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One pair of gateways for the module (starting two processes is the expensive part)."""
    tmp_path = tmp_path_factory.mktemp("fleet")
    stream_names = new_stream_names()
    data = tmp_path / "var"
    data.mkdir()
    store = open_store(data / "tailor.db")
    store.upsert_items([validate_item(r, NOW) for r in item_rows(8)])
    store.close()
    env = {**stream_names.env(), "TAILOR_TRENDING_CACHE_S": "0"}
    ports = free_port(), free_port()
    logs = [tmp_path / f"gateway{n}.log" for n in range(2)]
    # Started together (their start-up is the slow part), then both awaited.
    procs = [launch(data, port, env, log) for port, log in zip(ports, logs, strict=True)]
    try:
        for proc, port, log in zip(procs, ports, logs, strict=True):
            ready(proc, port, log)
        yield f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"
    finally:
        for proc in procs:
            stop(proc)
        asyncio.run(delete_stream(stream_names))


@pytest.mark.slow
async def test_an_event_accepted_by_a_changes_what_b_answers(fleet: tuple[str, str]) -> None:
    a_url, b_url = fleet
    me = "{ me { profile { events } recommendations(first: 8) { item { id } } } }"
    async with httpx.AsyncClient(base_url=a_url) as a, httpx.AsyncClient(base_url=b_url) as b:
        before = await gql(b, me, user="ryw")  # B answers (and caches) the empty profile
        assert before["me"]["profile"] is None
        assert "i8" in {r["item"]["id"] for r in before["me"]["recommendations"]}
        events = [
            {"messageId": "ryw-1", "type": "view", "userId": "ryw", "itemId": "i7"},
            {"messageId": "ryw-2", "type": "purchase", "userId": "ryw", "itemId": "i8"},
        ]
        r = await a.post("/v1/events", json=events, headers=service_headers())
        assert r.json()["accepted"] == 2
        accepted_at = time.monotonic()
        while True:
            after = await gql(b, me, user="ryw")
            if (after["me"]["profile"] or {}).get("events") == 2:
                break
            assert time.monotonic() - accepted_at < READ_YOUR_WRITES_BOUND_S, after
            await asyncio.sleep(0.02)
        # The purchase reached B's recommendations too (purchased items are not recommended).
        assert "i8" not in {rec["item"]["id"] for rec in after["me"]["recommendations"]}


@pytest.mark.slow
async def test_both_instances_answer_the_same_trending_list(fleet: tuple[str, str]) -> None:
    a_url, b_url = fleet
    # Distinct popularity per item, the events split across both instances.
    counts = {"i1": 2, "i2": 9, "i3": 5, "i4": 7, "i5": 1, "i6": 4}
    events = [
        {"messageId": f"t-{item}-{n}", "type": "view", "userId": f"u{n}", "itemId": item}
        for item, count in counts.items()
        for n in range(count)
    ]
    async with httpx.AsyncClient(headers=service_headers()) as c:
        for n, base in enumerate((a_url, b_url)):
            r = await c.post(f"{base}/v1/events", json=events[n::2])
            assert r.json()["accepted"] == len(events[n::2])
    await converged(len(events), a_url, b_url)
    expected = sorted(counts, key=lambda i: -counts[i])
    query = "{ trending(first: 8) { item { id } } }"
    lists = []
    for base in (a_url, b_url):
        async with httpx.AsyncClient(base_url=base) as c:
            lists.append([t["item"]["id"] for t in (await gql(c, query))["trending"]])
    assert lists[0] == lists[1]
    assert [i for i in lists[0] if i in counts] == expected

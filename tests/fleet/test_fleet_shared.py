"""The whole fleet shape with real processes: two `tailor serve` on their own ports sharing
PostgreSQL (a database of this module's own), Redis (a key prefix of its own), the event stream
(a stream of its own) and the artifact directory. An event accepted by A shows on B; both answer
the same trending list; a purge on A evicts B; a version trained once is served by both."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from catalog.importer import validate_item
from gateway.security.auth import issue_token
from storage import open_store
from tests.conftest import NOW, SECRET, item_rows
from tests.fleet.conftest import delete_stream, free_port, new_stream_names
from tests.fleet.processes import ROOT, converged, gql, launch, ready, service_headers, stop
from tests.pg import create_database, database_url, drop_database

REDIS_URL = "redis://127.0.0.1:6379/0"
BOUND_S = 5.0


@dataclass(frozen=True)
class Fleet:
    a: str
    b: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("shared")
    db = create_database("tailor_fleet_")
    names = new_stream_names()
    prefix = f"tailortest:{uuid.uuid4().hex[:12]}:"
    url = database_url(db)
    store = open_store(url)
    store.upsert_items([validate_item(r, NOW) for r in item_rows(8)])
    store.close()
    env = {
        **names.env(),
        "TAILOR_DATABASE_URL": url,
        "TAILOR_REDIS_URL": REDIS_URL,
        "TAILOR_REDIS_PREFIX": prefix,
        "TAILOR_DATA_DIR": str(tmp / "var"),
        "TAILOR_TRENDING_CACHE_S": "0",
        "TAILOR_RATE_LIMIT_PER_S": "0",
        "TAILOR_MODEL_POLL_S": "3600",  # only the version announcement can make them swap in time
    }
    ports = free_port(), free_port()
    logs = [tmp / f"gateway{n}.log" for n in range(2)]
    procs = [launch(tmp / "var", port, env, log) for port, log in zip(ports, logs, strict=True)]
    try:
        for proc, port, log in zip(procs, ports, logs, strict=True):
            ready(proc, port, log)
        yield Fleet(f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", env)
    finally:
        for proc in procs:
            stop(proc)
        asyncio.run(delete_stream(names))
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        drop_database(db)


async def _until_within(bound_s: float, check: object) -> float:
    started = time.monotonic()
    while True:
        if await check():  # type: ignore[operator]
            return time.monotonic() - started
        assert time.monotonic() - started < bound_s, "not within the bound"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_an_event_on_a_shows_on_b_through_postgres(fleet: Fleet) -> None:
    me = "{ me { profile { events } } }"
    async with httpx.AsyncClient(base_url=fleet.a) as a, httpx.AsyncClient(base_url=fleet.b) as b:
        assert (await gql(b, me, user="pg-ryw"))["me"]["profile"] is None  # cached on B
        events = [{"messageId": "pg-ryw-1", "type": "view", "userId": "pg-ryw", "itemId": "i7"}]
        assert (await a.post("/v1/events", json=events, headers=service_headers())).json()[
            "accepted"
        ] == 1

        async def shows() -> bool:
            return ((await gql(b, me, user="pg-ryw"))["me"]["profile"] or {}).get("events") == 1

        await _until_within(BOUND_S, shows)


@pytest.mark.slow
async def test_both_answer_the_same_trending_list(fleet: Fleet) -> None:
    counts = {"i1": 6, "i2": 2, "i3": 4}
    events = [
        {"messageId": f"pg-t-{item}-{n}", "type": "view", "userId": f"p{n}", "itemId": item}
        for item, count in counts.items()
        for n in range(count)
    ]
    async with httpx.AsyncClient(headers=service_headers()) as c:
        for n, base in enumerate((fleet.a, fleet.b)):
            assert (await c.post(f"{base}/v1/events", json=events[n::2])).status_code == 200
    await converged(len(events), fleet.a, fleet.b)
    lists = []
    for base in (fleet.a, fleet.b):
        async with httpx.AsyncClient(base_url=base) as c:
            # POST: not answered from a cache another test may have filled.
            found = await gql(c, "{ trending(first: 8) { item { id } } }")
            lists.append([t["item"]["id"] for t in found["trending"]])
    assert lists[0] == lists[1]
    assert [i for i in lists[0] if i in counts] == ["i1", "i3", "i2"]


@pytest.mark.slow
async def test_a_purge_on_a_evicts_b(fleet: Fleet) -> None:
    query = {"query": '{ item(id: "i5") { id title } }'}
    admin = {"authorization": f"Bearer {issue_token(SECRET, 'ops', scopes=['admin'])}"}
    async with httpx.AsyncClient(base_url=fleet.a) as a, httpx.AsyncClient(base_url=fleet.b) as b:
        for _ in range(3):
            cached = await b.get("/graphql", params=query)
        assert cached.headers["x-cache"] == "HIT"
        r = await a.post("/admin/purge", json={"tags": ["item:i5"]}, headers=admin)
        assert r.status_code == 200

        async def evicted() -> bool:
            answer = await b.get("/graphql", params=query)
            return bool(answer.headers["x-cache"] == "MISS")

        await _until_within(BOUND_S, evicted)


@pytest.mark.slow
async def test_a_version_trained_once_is_served_by_both(fleet: Fleet) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_ENCODER": "hashing",
        **fleet.env,
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli.main", "train", "index"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    async def both_serve_it() -> bool:
        async with httpx.AsyncClient() as c:
            versions = [
                (await c.get(f"{base}/readyz")).json()["models"]["item_index"]
                for base in (fleet.a, fleet.b)
            ]
        return versions[0] is not None and versions[0] == versions[1]

    await _until_within(15.0, both_serve_it)

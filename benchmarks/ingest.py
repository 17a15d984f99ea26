"""Ingestion throughput: events/s through HTTP (durable, group commit) vs raw SQLite executemany.

    python benchmarks/ingest.py [--events 200000] [--batch 500] [--concurrency 8]

Both sides write the same rows with durability on (WAL, synchronous=FULL, one COMMIT per batch
on the raw side). Targets: >= 10,000 events/s through HTTP and >= 0.4 of the raw insert rate
(aim 0.6).

On a shared machine wall-clock rates swing with the load, so the script also prints the CPU time
each side spent per event (the gateway process's user+system time from /proc; the raw loop's own
process time): a figure that moves much less with other processes' load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from gateway.security.auth import issue_token
from profiles.events import validate_event
from storage import open_store

TYPES = ["view", "view", "view", "click", "add_to_cart", "purchase"]


def make_events(n: int) -> list[dict[str, object]]:
    """A clickstream: 5,000 users, sessions of 10 events, 20,000 items, six event types.

    Events of a session arrive together, as they do from a browser SDK's queue; a batch of 500
    therefore touches ~50 profiles (the profile write per touched user is the expensive part).
    """
    base = 1_767_225_600.0
    out = []
    for k in range(n):
        etype = TYPES[k % len(TYPES)]
        ev: dict[str, object] = {
            "messageId": f"bench-{k}",
            "type": etype,
            "userId": f"u{(k // 10) % 5000}",
            "itemId": f"i{(k * 7919) % 20000}",
            "sessionId": f"s{k // 10}",
            "channel": "web",
            "timestamp": base + k * 0.01,
        }
        if etype in ("add_to_cart", "purchase"):
            ev["properties"] = {"price": 19.99, "quantity": 1}
        out.append(ev)
    return out


def _children_cpu_s() -> float:
    """User+system CPU seconds of this process's direct children (the gateway), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == os.getpid():  # field 4 (ppid), after the command name
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


async def post_all(base: str, bodies: list[bytes], concurrency: int) -> tuple[int, float]:
    """POST every body to ``/v1/events`` from ``concurrency`` clients (a service token);
    returns the events accepted and the seconds until every batch was answered. The other
    ingest benchmarks (backends, fleet) send their load through this too."""
    token = issue_token(SECRET, "bench", scopes=["service"], ttl_s=3600)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=120
    ) as client:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        accepted = 0

        async def worker() -> None:
            nonlocal accepted
            while not queue.empty():
                r = await client.post("/v1/events", content=queue.get_nowait())
                r.raise_for_status()
                accepted += orjson.loads(r.content)["accepted"]

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return accepted, time.perf_counter() - started


async def http_rate(
    events: list[dict[str, object]], batch: int, concurrency: int
) -> tuple[float, float]:
    """Events/s through HTTP and the gateway's CPU seconds per event."""
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory() as tmp, gateway_process(Path(tmp)) as base:
        cpu_before = _children_cpu_s()
        accepted, elapsed = await post_all(base, bodies, concurrency)
        cpu = _children_cpu_s() - cpu_before
    assert accepted == len(events), f"only {accepted} of {len(events)} accepted"
    return len(events) / elapsed, cpu / len(events)


def raw_rate(events: list[dict[str, object]], batch: int) -> tuple[float, float]:
    """The store's ceiling: the same rows, executemany into the same schema, COMMIT per batch.

    Returns events/s and CPU seconds per event."""
    with tempfile.TemporaryDirectory() as tmp:
        open_store(Path(tmp) / "raw.db").close()  # same schema and indexes
        records = [validate_event(e, received_at=1_767_225_600.0) for e in events]
        rows = [
            (
                r.message_id,
                r.type,
                r.profile_key,
                r.ts,
                r.received_at,
                r.payload_hash,
                r.user_id,
                r.anonymous_id,
                r.item_id,
                r.session_id,
                r.channel,
                orjson.dumps(dict(r.properties)).decode(),
                r.flags,
            )
            for r in records
        ]
        conn = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        started = time.perf_counter()
        cpu_before = time.process_time()
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO events(message_id,type,profile_key,ts,received_at,payload_hash,user_id,"
                "anonymous_id,item_id,session_id,channel,properties,flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows[i : i + batch],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        conn.close()
    return len(rows) / elapsed, cpu / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    events = make_events(args.events)
    http, http_cpu = asyncio.run(http_rate(events, args.batch, args.concurrency))
    raw, raw_cpu = raw_rate(events, args.batch)
    print(f"events: {args.events}, batch: {args.batch}, concurrency: {args.concurrency}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(
        f"HTTP (validated, deduplicated, profiles updated, durable): {http:,.0f} events/s, "
        f"gateway CPU {http_cpu * 1e6:.1f} us/event"
    )
    print(
        f"raw SQLite executemany (same rows, same schema, durable):  {raw:,.0f} events/s, "
        f"CPU {raw_cpu * 1e6:.1f} us/event"
    )
    print(
        f"ratio HTTP / raw: {http / raw:.2f}  (target >= 0.40, aim 0.60; HTTP target >= 10,000 "
        f"events/s: {'met' if http >= 10_000 else 'NOT met'})"
    )
    print(f"CPU per event, raw / gateway: {raw_cpu / http_cpu:.2f}")


if __name__ == "__main__":
    main()

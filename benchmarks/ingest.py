"""Ingestion throughput: events/s through HTTP (durable, group commit) vs raw SQLite executemany.

    python benchmarks/ingest.py [--events 200000] [--batch 500] [--concurrency 8]

Both sides write the same rows with durability on (WAL, synchronous=FULL, one COMMIT per batch
on the raw side). Targets: >= 10,000 events/s through HTTP and >= 0.3 of the raw insert rate.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def http_rate(events: list[dict[str, object]], batch: int, concurrency: int) -> float:
    token = issue_token(SECRET, "bench", scopes=["service"], ttl_s=3600)
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory() as tmp, gateway_process(Path(tmp)) as base:
        limits = httpx.Limits(max_connections=concurrency)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        async with httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=60
        ) as client:
            queue: asyncio.Queue[bytes] = asyncio.Queue()
            for b in bodies:
                queue.put_nowait(b)
            accepted = 0

            async def worker() -> None:
                nonlocal accepted
                while not queue.empty():
                    body = queue.get_nowait()
                    r = await client.post("/v1/events", content=body)
                    r.raise_for_status()
                    accepted += orjson.loads(r.content)["accepted"]

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
    assert accepted == len(events), f"only {accepted} of {len(events)} accepted"
    return len(events) / elapsed


def raw_rate(events: list[dict[str, object]], batch: int) -> float:
    """The store's ceiling: the same rows, executemany into the same schema, COMMIT per batch."""
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
        for i in range(0, len(rows), batch):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO events(message_id,type,profile_key,ts,received_at,payload_hash,user_id,"
                "anonymous_id,item_id,session_id,channel,properties,flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows[i : i + batch],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    events = make_events(args.events)
    http = asyncio.run(http_rate(events, args.batch, args.concurrency))
    raw = raw_rate(events, args.batch)
    print(f"events: {args.events}, batch: {args.batch}, concurrency: {args.concurrency}")
    print(f"HTTP (validated, deduplicated, profiles updated, durable): {http:,.0f} events/s")
    print(f"raw SQLite executemany (same rows, same schema, durable):  {raw:,.0f} events/s")
    print(
        f"ratio HTTP / raw: {http / raw:.2f}  (target >= 0.30; HTTP target >= 10,000 events/s: "
        f"{'met' if http >= 10_000 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()

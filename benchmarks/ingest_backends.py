"""Ingestion over HTTP, events/s: the embedded SQLite store vs the PostgreSQL system of record.

    python benchmarks/ingest_backends.py [--quick] [--events 100000] [--batch 500]
                                         [--concurrency 8] [--pg-admin postgresql://…/postgres]

The same request shape as benchmarks/ingest.py (a clickstream of 5,000 users, JSON batches of 500
POSTed to /v1/events by 8 concurrent clients) against two real `tailor serve` processes run one
after the other: one on a fresh data dir (SQLite), one with TAILOR_DATABASE_URL pointing at a
fresh database ``tailor_bench_<random>`` on the PostgreSQL server (created here, dropped after).
Both are durable (SQLite synchronous=FULL; PostgreSQL synchronous_commit=on), both answer each
request after its COMMIT. Prints both rates and PostgreSQL / SQLite as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from benchmarks.ingest import make_events
from gateway.security.auth import issue_token


async def post_all(base: str, bodies: list[bytes], concurrency: int) -> tuple[int, float]:
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


def rate(events: list[dict[str, object]], batch: int, concurrency: int, **env: str) -> float:
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory() as tmp, gateway_process(Path(tmp), **env) as base:
        accepted, elapsed = asyncio.run(post_all(base, bodies, concurrency))
    if accepted != len(events):
        raise SystemExit(f"only {accepted} of {len(events)} events accepted")
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 events (about a minute)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--pg-admin",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server where this user may create and drop a database",
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.events
    events = make_events(n)
    name = f"tailor_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_admin, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"{args.pg_admin.rsplit('/', 1)[0]}/{name}"
        sqlite = rate(events, args.batch, args.concurrency)
        postgres = rate(events, args.batch, args.concurrency, TAILOR_DATABASE_URL=url)
    finally:
        with psycopg.connect(args.pg_admin, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    print(f"events: {n}, batch: {args.batch}, concurrency: {args.concurrency}, one process each")
    print(f"embedded SQLite (WAL, synchronous=FULL):      {sqlite:,.0f} events/s")
    print(f"PostgreSQL (pool, synchronous_commit=on):     {postgres:,.0f} events/s")
    print(f"ratio PostgreSQL / SQLite: {postgres / sqlite:.2f}")


if __name__ == "__main__":
    main()

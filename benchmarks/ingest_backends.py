"""Ingestion over HTTP, events/s: the embedded SQLite store vs the PostgreSQL system of record.

    python benchmarks/ingest_backends.py [--quick] [--events 100000] [--batch 500]
                                         [--concurrency 8] [--pg-admin postgresql://…/postgres]

The same request shape as benchmarks/ingest.py (a clickstream of 5,000 users over 20,000 items,
JSON batches of 500 POSTed to /v1/events by 8 concurrent clients) against two real `tailor serve`
processes run one after the other, each with the 20,000 items in its catalog (``--no-catalog``:
none, so every item's first sight is a store read): one on a fresh data dir (SQLite), one with TAILOR_DATABASE_URL pointing at a
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
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import gateway_process
from benchmarks.ingest import make_events, post_all
from storage import open_store
from storage.types import ItemRecord

CATEGORIES = ("Shoes", "Bags", "Dresses", "Coats", "Shirts")


def seed_catalog(target: str | Path, n_items: int = 20_000) -> None:
    """The 20,000 items the clickstream refers to, written before the gateway starts (a shop
    has a catalog: the gateway loads it into memory at start-up, as it would in production)."""
    store = open_store(target)
    try:
        store.upsert_items(
            [
                ItemRecord(f"i{k}", f"item {k}", categories=(CATEGORIES[k % len(CATEGORIES)],))
                for k in range(n_items)
            ]
        )
    finally:
        store.close()


def rate(
    events: list[dict[str, object]], batch: int, concurrency: int, catalog: bool, **env: str
) -> float:
    bodies = [orjson.dumps(events[i : i + batch]) for i in range(0, len(events), batch)]
    with tempfile.TemporaryDirectory() as tmp:
        if catalog:
            seed_catalog(env.get("TAILOR_DATABASE_URL") or Path(tmp) / "tailor.db")
        # The content index is built at start-up from the catalog; ingestion never reads it, so
        # the cheap hashing encoder stands in for MiniLM (same for both backends).
        with gateway_process(Path(tmp), TAILOR_ENCODER="hashing", **env) as base:
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
    parser.add_argument(
        "--no-catalog",
        action="store_true",
        help="start with an empty catalog (every item of the stream is a lookup miss, as in "
        "benchmarks/ingest.py): each first sight of an item then costs a store read",
    )
    args = parser.parse_args()
    n = 20_000 if args.quick else args.events
    events = make_events(n)
    name = f"tailor_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg_admin, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"{args.pg_admin.rsplit('/', 1)[0]}/{name}"
        catalog = not args.no_catalog
        sqlite = rate(events, args.batch, args.concurrency, catalog)
        postgres = rate(events, args.batch, args.concurrency, catalog, TAILOR_DATABASE_URL=url)
    finally:
        with psycopg.connect(args.pg_admin, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    print(
        f"events: {n}, batch: {args.batch}, concurrency: {args.concurrency}, one process each, "
        f"catalog: {'20,000 items loaded' if catalog else 'empty'}"
    )
    print(f"embedded SQLite (WAL, synchronous=FULL):      {sqlite:,.0f} events/s")
    print(f"PostgreSQL (pool, synchronous_commit=on):     {postgres:,.0f} events/s")
    print(f"ratio PostgreSQL / SQLite: {postgres / sqlite:.2f}")


if __name__ == "__main__":
    main()

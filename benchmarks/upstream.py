"""A GraphQL query returning 100 items, resolved from an upstream catalog on loopback vs the local
store, measured side by side in one run.

Three real gateway processes answer the same ``items(ids: [100 ids])`` query:

- ``local``: no upstream, items from the SQLite store (the baseline);
- ``upstream``: through the bundled upstream catalog process, its answers cached (TTL 60 s);
- ``upstream-nocache``: the same with a zero TTL, so every query makes its upstream call.

Printed: upstream requests per query (target: 1, whatever the 100 items), p50/p99 latency and
the ratio of each p50/p99 to the local baseline. Blocks of queries are interleaved between
the gateways so that machine noise hits all of them alike.

    python benchmarks/upstream.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import free_port, gateway_process
from catalog.importer import validate_item
from gateway.cli.upstream_demo import upstream_process
from storage import open_store

QUERY = "query($ids: [ID!]!) { items(ids: $ids) { id title price categories } }"
N_ITEMS = 1000


def rows() -> list[dict[str, object]]:
    cats = ["Shoes", "Bags", "Dresses", "Coats"]
    return [
        {
            "id": f"b{k}",
            "title": f"Item {k}",
            "description": f"Benchmark item number {k}",
            "categories": [cats[k % 4]],
            "price": float(k % 200),
            "updated_at": 1_700_000_000 + k,
        }
        for k in range(N_ITEMS)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries")
    args = parser.parse_args()
    rounds, block = (4, 25) if args.quick else (10, 50)
    common = {
        "TAILOR_ENCODER": "hashing",
        "TAILOR_EDGE_CACHE": "false",
        "TAILOR_RATE_LIMIT_PER_S": "0",
        "TAILOR_MAX_CONCURRENCY": "0",
        "TAILOR_MODEL_POLL_S": "3600",
    }
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        root = Path(tmp)
        world = root / "world"
        world.mkdir()
        (world / "items.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows()))
        url = stack.enter_context(upstream_process(world, free_port()))
        local_dir = root / "local"
        store = open_store(local_dir / "tailor.db")
        store.upsert_items([validate_item(r, time.time()) for r in rows()])
        store.close()
        up = {"TAILOR_UPSTREAM_CATALOG_URL": url}
        gateways = {
            "local": stack.enter_context(gateway_process(local_dir, **common)),
            "upstream": stack.enter_context(gateway_process(root / "up", **common, **up)),
            "upstream-nocache": stack.enter_context(
                gateway_process(root / "up0", **common, **up, TAILOR_UPSTREAM_CACHE_TTL_S="0")
            ),
        }
        clients = {
            name: stack.enter_context(httpx.Client(base_url=base, timeout=30))
            for name, base in gateways.items()
        }
        times: dict[str, list[float]] = {name: [] for name in gateways}
        upstream_calls: dict[str, int] = dict.fromkeys(gateways, 0)
        stats = httpx.Client(base_url=url, timeout=10)
        for r in range(rounds):
            for name, client in clients.items():
                before = stats.get("/_stats").json()["by_kind"]["items"]
                for q in range(block):
                    start = (r * block + q) * 7 % (N_ITEMS - 100)
                    ids = [f"b{k}" for k in range(start, start + 100)]
                    t0 = time.perf_counter()
                    resp = client.post("/graphql", json={"query": QUERY, "variables": {"ids": ids}})
                    times[name].append((time.perf_counter() - t0) * 1000)
                    body = resp.json()
                    if "errors" in body or len(body["data"]["items"]) != 100:
                        raise SystemExit(f"{name}: bad answer {str(body)[:300]}")
                upstream_calls[name] += stats.get("/_stats").json()["by_kind"]["items"] - before
        base50, base99 = pct(times["local"], 0.5), pct(times["local"], 0.99)
        n = rounds * block
        print(f"items(ids: [100 ids]) x {n} queries per gateway, {N_ITEMS} items, loopback")
        print(
            f"{'gateway':<18} {'upstream req/query':>19} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'mean ms':>8} {'p50 x local':>12} {'p99 x local':>12}"
        )
        for name, values in times.items():
            p50, p99 = pct(values, 0.5), pct(values, 0.99)
            print(
                f"{name:<18} {upstream_calls[name] / n:>19.2f} {p50:>8.2f} {p99:>8.2f} "
                f"{statistics.fmean(values):>8.2f} {p50 / base50:>12.2f} {p99 / base99:>12.2f}"
            )
        stats.close()


if __name__ == "__main__":
    main()

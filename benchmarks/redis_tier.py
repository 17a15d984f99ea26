"""The Redis shared tier: what it costs on a hit, what it saves on a miss, how fast purges cross.

    python benchmarks/redis_tier.py [--quick] [--seconds 4] [--rounds 3] [--connections 16]

Real gateway processes on loopback over one seeded data dir and the Redis on 127.0.0.1:6379
(a key prefix of this run's own, deleted at the end):

1. Cached persisted GET: requests/s of an in-process HIT on a gateway with the Redis level
   (``TAILOR_REDIS_URL``) vs one without, alternating rounds. A hit never reaches Redis, so the
   target is a ratio >= 0.9.
2. A local miss: latency of ``trending(first, category)`` questions this process was never
   asked, answered from Redis (another process computed them) vs executed (nobody had).
   Target: filled from Redis faster than executed (ratio executed/filled > 1).
3. Invalidation delay across processes: ``POST /admin/purge`` on A, then B is polled until its
   cached answer is gone (``X-Cache: MISS``); p50/p99 in ms, next to the same purge seen on A
   itself (the baseline: no fan-out needed). Target: p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from benchmarks.edge_cache import SERVER_ENV, _apq_path, _exchange, _request, seed, throughput
from gateway.security.auth import issue_token

REDIS_URL = "redis://127.0.0.1:6379/0"
ITEM_QUERY = "query Item($id: ID!) { item(id: $id) { id title price categories } }"
TRENDING_QUERY = (
    "query Trending($first: Int!, $category: String) { trending(first: $first, category: $category) "
    "{ score reason source item { id title description price categories } } }"
)
CATEGORIES = [None, "Shoes", "Dresses", "Bags", "Coats"]


def _variants(start: int, n: int) -> list[dict[str, object]]:
    """Distinct trending questions (so distinct cache keys): sizes 20..100 x categories."""
    out: list[dict[str, object]] = []
    for k in range(start, start + n):
        out.append({"first": 20 + k // len(CATEGORIES), "category": CATEGORIES[k % 5]})
    return out


def _register(base: str, query: str, **variables: object) -> None:
    r = httpx.get(base + _apq_path(query, **variables) + "&" + urlencode({"query": query}))
    assert r.status_code == 200 and "errors" not in r.json(), r.text


async def _miss_latencies(
    base: str, variants: list[dict[str, object]]
) -> tuple[list[float], list[str]]:
    """One sequential GET per variant (each a local miss); seconds each and the X-Cache seen."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    times, states = [], []
    try:
        for variables in variants:
            request = _request(_apq_path(TRENDING_QUERY, **variables), url.netloc)
            t0 = time.perf_counter()
            head, _body = await _exchange(reader, writer, request)
            times.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            at = head.lower().find(b"x-cache: ")
            states.append(head[at + 9 : head.index(b"\r\n", at)].decode())
    finally:
        writer.close()
    return times, states


async def _purge_delay(purger: str, watched: str, tag: str, path: str, admin: str) -> float:
    """Seconds from sending the purge on ``purger`` until ``watched`` answers ``path`` MISS."""
    async with httpx.AsyncClient() as client:
        for _ in range(3):  # cached on the watched instance
            r = await client.get(watched + path)
        assert r.headers["x-cache"] == "HIT", r.headers
        url = urlsplit(watched)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        request = _request(path, url.netloc)
        try:
            started = time.perf_counter()
            purge = asyncio.ensure_future(
                client.post(
                    purger + "/admin/purge",
                    json={"tags": [tag]},
                    headers={"authorization": f"Bearer {admin}"},
                )
            )
            while True:
                head, _body = await _exchange(reader, writer, request)
                if b"x-cache: MISS" in head:
                    break
            delay = time.perf_counter() - started
            assert (await purge).status_code == 200
        finally:
            writer.close()
    return delay


def _pct(xs: list[float], p: int) -> float:
    return statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else xs[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, fewer samples")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--misses", type=int, default=200, help="questions per miss side")
    parser.add_argument("--purges", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.misses, args.purges = 2.0, 1, 60, 40
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    prefix = f"tailorbench:{uuid.uuid4().hex[:10]}:"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"Redis on 127.0.0.1:6379 does not answer ({exc}): start it first", file=sys.stderr)
        return 2
    shared = {"TAILOR_REDIS_URL": REDIS_URL, "TAILOR_REDIS_PREFIX": prefix}
    admin = issue_token(SECRET, "bench-ops", scopes=("admin",), ttl_s=3600)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(tmp)
            seed(data_dir, n_items=2 * args.misses + 10, n_events=300)
            with (
                gateway_process(data_dir, **SERVER_ENV, **shared) as a,
                gateway_process(data_dir, **SERVER_ENV, **shared) as b,
                gateway_process(data_dir, **SERVER_ENV) as local,
            ):
                # 1. hits: the Redis level is not on the hit path
                for base in (a, local):
                    _register(base, ITEM_QUERY, id="i7")
                gql_a = _request(_apq_path(ITEM_QUERY, id="i7"), urlsplit(a).netloc)
                gql_local = _request(_apq_path(ITEM_QUERY, id="i7"), urlsplit(local).netloc)
                with_redis, in_process = [], []
                for _ in range(args.rounds):
                    for rates, base, req in (
                        (with_redis, a, gql_a),
                        (in_process, local, gql_local),
                    ):
                        rates.append(
                            asyncio.run(
                                throughput(base, req, args.seconds, args.connections, b"HIT")
                            )
                        )
                # 2. misses: filled from Redis (A computed them) vs executed
                _register(a, TRENDING_QUERY, first=10, category=None)
                filled_ids = _variants(0, args.misses)
                executed_ids = _variants(args.misses, args.misses)
                asyncio.run(_miss_latencies(a, filled_ids))  # A computes, writes to Redis
                executed, ex_states = asyncio.run(_miss_latencies(b, executed_ids))
                filled, fill_states = asyncio.run(_miss_latencies(b, filled_ids))
                assert set(ex_states) == {"MISS"} and set(fill_states) == {"HIT"}, (
                    ex_states,
                    fill_states,
                )
                # 3. purge fan-out A -> B, and A -> A as the baseline
                path = _apq_path(ITEM_QUERY, id="i7")
                across, same = [], []
                for _ in range(args.purges):
                    across.append(asyncio.run(_purge_delay(a, b, "item:i7", path, admin)))
                    same.append(asyncio.run(_purge_delay(a, a, "item:i7", path, admin)))
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    hit_ratio = statistics.median(r / p for r, p in zip(with_redis, in_process, strict=True))
    print(
        f"cached persisted GET, in-process only: {statistics.median(in_process):9.0f} req/s  "
        f"(rounds: {', '.join(f'{r:.0f}' for r in in_process)})"
    )
    print(
        f"cached persisted GET, with Redis level: {statistics.median(with_redis):8.0f} req/s  "
        f"(rounds: {', '.join(f'{r:.0f}' for r in with_redis)})"
    )
    print(
        f"hit throughput ratio redis/in-process: {hit_ratio:.2f} "
        f"(target >= 0.9: {'met' if hit_ratio >= 0.9 else 'NOT met'})"
    )
    fill_ms, exec_ms = statistics.median(filled) * 1e3, statistics.median(executed) * 1e3
    miss_ratio = exec_ms / fill_ms
    print(
        f"local miss filled from Redis: median {fill_ms:.2f} ms, p99 {_pct(filled, 99) * 1e3:.2f} ms"
    )
    print(
        f"local miss executed:          median {exec_ms:.2f} ms, p99 {_pct(executed, 99) * 1e3:.2f} ms"
    )
    print(
        f"miss latency ratio executed/filled: {miss_ratio:.1f}x "
        f"(target > 1: {'met' if miss_ratio > 1 else 'NOT met'})"
    )
    p50, p99 = statistics.median(across) * 1e3, _pct(across, 99) * 1e3
    print(
        f"purge seen on the other process (A -> B): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
        f"({len(across)} purges)"
    )
    print(
        f"purge seen on the same process (A -> A):  p50 {statistics.median(same) * 1e3:.2f} ms, "
        f"p99 {_pct(same, 99) * 1e3:.2f} ms"
    )
    print(
        f"fan-out delay ratio across/same (p50): {p50 / (statistics.median(same) * 1e3):.2f} "
        f"(target p99 < 100 ms: {'met' if p99 < 100 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

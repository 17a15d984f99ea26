"""Edge cache: a cached persisted query over GET vs a raw Starlette JSON route, and the
uncached/cached latency of a personalized query.

    python benchmarks/edge_cache.py [--quick] [--seconds 5] [--rounds 3] [--connections 16]

One gateway process on loopback serves both throughput sides, measured in alternating rounds
(the machine is shared and noisy): ``GET /graphql?extensions=<APQ hash>&variables=...`` answered
from the gateway's cache (``X-Cache: HIT``) and ``GET /v1/ping`` (a plain Starlette JSON route in
the same app). Target: the cached query reaches >= 0.6 of the raw route's throughput.

Latency: one connection, sequential requests of a personalized query (``me { profile ... }``
with a bearer token), cached (same process) vs uncached (a second process with
``TAILOR_EDGE_CACHE=false`` on the same data).

The load generator is a minimal HTTP/1.1 keep-alive client on raw asyncio streams: httpx would
be the bottleneck on a 2-core machine and flatten the ratio towards 1.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from gateway.security.auth import issue_token

ITEM_QUERY = "query Item($id: ID!) { item(id: $id) { id title price categories } }"
PERSONAL_QUERY = (
    "{ me { id profile { events engagementScore recencyDays views7d "
    "topCategories(first: 5) { category score } features { name value } } } }"
)
USER = "bench-u1"
# The per-client rate limits would throttle a load test from one client.
SERVER_ENV = {
    "TAILOR_RATE_LIMIT_PER_S": "0",
    "TAILOR_MAX_CONCURRENCY": "0",
    "TAILOR_ENCODER": "hashing",
}


def seed(data_dir: Path, n_items: int = 200, n_events: int = 300) -> None:
    """A small catalog and one user with a history (through the real import paths)."""
    from catalog.importer import validate_item
    from gateway.settings import load_settings
    from gateway.wiring import build_services

    settings = load_settings(data_dir=data_dir, jwt_secret=SECRET, encoder="hashing")
    services = build_services(settings)
    try:
        now = time.time()
        cats = ["Shoes", "Dresses", "Bags", "Coats"]
        items = [
            validate_item(
                {
                    "id": f"i{k}",
                    "title": f"Item {k}",
                    "description": f"item number {k}",
                    "categories": [cats[k % 4]],
                    "price": 10.0 + k,
                },
                now,
            )
            for k in range(n_items)
        ]
        services.store.upsert_items(items)
        events = [
            {
                "messageId": f"seed-{k}",
                "type": "view" if k % 5 else "add_to_cart",
                "userId": USER,
                "itemId": f"i{(k * 37) % n_items}",
                "timestamp": now - (n_events - k) * 60,
            }
            for k in range(n_events)
        ]
        services.ingest.ingest_sync(events)
    finally:
        services.store.close()


def _request(path: str, host: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[bytes, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    length = int(lower[at + 15 : lower.index(b"\r\n", at)]) if at >= 0 else 0
    body = await reader.readexactly(length) if length else b""
    return head, body


async def throughput(
    base: str, request: bytes, seconds: float, connections: int, expect: bytes
) -> float:
    """Requests/s over ``connections`` keep-alive connections; every answer must contain ``expect``."""
    url = urlsplit(base)
    deadline = time.perf_counter() + seconds
    counts: list[int] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        n = 0
        try:
            while time.perf_counter() < deadline:
                head, _body = await _exchange(reader, writer, request)
                if not head.startswith(b"HTTP/1.1 200") or expect not in head:
                    raise RuntimeError(f"unexpected answer: {head[:200]!r}")
                n += 1
        finally:
            writer.close()
        counts.append(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return sum(counts) / (time.perf_counter() - started)


async def latencies(base: str, request: bytes, n: int) -> list[float]:
    """Seconds per request, one connection, sequential."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            head, _body = await _exchange(reader, writer, request)
            out.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
    finally:
        writer.close()
    return out


def _apq_path(query: str, **variables: object) -> str:
    digest = hashlib.sha256(query.encode()).hexdigest()
    ext = json.dumps(
        {"persistedQuery": {"version": 1, "sha256Hash": digest}}, separators=(",", ":")
    )
    return "/graphql?" + urlencode({"extensions": ext, "variables": json.dumps(variables)})


def _ms(xs: list[float]) -> str:
    qs = statistics.quantiles(xs, n=100)
    return f"median {statistics.median(xs) * 1e3:.3f} ms, p99 {qs[98] * 1e3:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, 300 latency samples")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.samples = 2.0, 1, 300
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    token = issue_token(SECRET, USER, ttl_s=3600)
    auth = {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        seed(data_dir)
        with gateway_process(data_dir, **SERVER_ENV) as base:
            host = urlsplit(base).netloc
            # Register the persisted query (Apollo's second request) and warm the cache.
            reg = httpx.get(
                base + _apq_path(ITEM_QUERY, id="i7") + "&" + urlencode({"query": ITEM_QUERY})
            )
            assert reg.status_code == 200 and reg.json()["data"]["item"]["id"] == "i7", reg.text
            gql = _request(_apq_path(ITEM_QUERY, id="i7"), host)
            ping = _request("/v1/ping", host)
            personal = _request("/graphql?" + urlencode({"query": PERSONAL_QUERY}), host, auth)
            for _ in range(3):  # new operations are first keyed PUBLIC, then per user
                httpx.get(base + "/graphql", params={"query": PERSONAL_QUERY}, headers=auth)

            ping_rates, gql_rates = [], []
            for _ in range(args.rounds):
                ping_rates.append(
                    asyncio.run(throughput(base, ping, args.seconds, args.connections, b"200"))
                )
                gql_rates.append(
                    asyncio.run(
                        throughput(base, gql, args.seconds, args.connections, b"x-cache: HIT")
                    )
                )
            cached = asyncio.run(latencies(base, personal, args.samples))
            hit = httpx.get(base + "/graphql", params={"query": PERSONAL_QUERY}, headers=auth)
            assert hit.headers["x-cache"] == "HIT", hit.headers
        with gateway_process(data_dir, TAILOR_EDGE_CACHE="false", **SERVER_ENV) as base:
            host = urlsplit(base).netloc
            personal = _request("/graphql?" + urlencode({"query": PERSONAL_QUERY}), host, auth)
            asyncio.run(latencies(base, personal, 20))  # warm-up
            uncached = asyncio.run(latencies(base, personal, args.samples))

    ping_rate, gql_rate = statistics.median(ping_rates), statistics.median(gql_rates)
    # Each round measures both sides back to back: the median of per-round ratios is steadier
    # than a ratio of medians on a shared machine.
    ratio = statistics.median(g / p for g, p in zip(gql_rates, ping_rates, strict=True))
    rounds = ", ".join(f"{g / p:.2f}" for g, p in zip(gql_rates, ping_rates, strict=True))
    print(
        f"raw Starlette JSON route   GET /v1/ping: {ping_rate:10.0f} req/s  (rounds: "
        + ", ".join(f"{r:.0f}" for r in ping_rates)
        + ")"
    )
    print(
        f"cached persisted query     GET /graphql: {gql_rate:10.0f} req/s  (rounds: "
        + ", ".join(f"{r:.0f}" for r in gql_rates)
        + ")"
    )
    verdict = "met" if ratio >= 0.6 else "NOT met"
    print(
        f"throughput ratio cached/raw: {ratio:.2f} (per round: {rounds}; target >= 0.6: {verdict})"
    )
    print(f"personalized query, cached:   {_ms(cached)}")
    print(f"personalized query, uncached: {_ms(uncached)}")
    print(
        f"latency ratio uncached/cached (median): "
        f"{statistics.median(uncached) / statistics.median(cached):.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

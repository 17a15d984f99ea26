"""Observability overhead: cached persisted-query GET throughput with metrics and tracing on vs
off, measured in one run.

    python benchmarks/observability.py [--quick] [--seconds 4] [--rounds 3] [--connections 16]

Four gateway processes serve the same data on loopback: ``off`` (``TAILOR_METRICS_ENABLED=
false``: no request families and no ``/metrics``; the one-increment counters inside the layers
stay), ``metrics`` (the default: request counters and histograms; tracing off),
``metrics+tracing`` (``TAILOR_TRACING=true``, every request sampled, spans exported by
OTLP/HTTP to a sink in this process) and ``metrics+tracing 10%`` (one trace in ten sampled). Each round measures the three
back to back (the machine is shared and noisy); the figure is the median over rounds of each
side's throughput divided by the baseline's in the same round. Target: metrics on, tracing off
costs under 5% (ratio >= 0.95). All of them log at ``warning`` (no access lines), like the other
benchmarks.

Over loopback the figure includes the load generator and the scheduling of four processes on a
shared machine, which is noisy; the script also measures the server side alone: the same four
configurations as apps in this process, called directly through ASGI in alternating blocks of
requests, and reports microseconds per cached GET and the same ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process
from benchmarks.edge_cache import ITEM_QUERY, SERVER_ENV, _apq_path, _request, seed, throughput

TARGET = 0.95


class _Sink(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that accepts and drops every export."""

    spans_bytes = 0

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length", 0))
        _Sink.spans_bytes += len(self.rfile.read(n))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


async def _asgi_get(app: Any, path: str, query: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def in_process(
    data_dir: Path, env: dict[str, dict[str, str]], rounds: int, block: int
) -> dict[str, list[float]]:
    """Microseconds per cached persisted GET, each configuration an app in this process."""
    from gateway.app import create_app

    path, _, query = _apq_path(ITEM_QUERY, id="i7").partition("?")
    register = (query + "&" + urlencode({"query": ITEM_QUERY})).encode()
    apps = {}
    times: dict[str, list[float]] = {side: [] for side in env}
    async with AsyncExitStack() as stack:
        for side, overrides in env.items():
            settings = {k.removeprefix("TAILOR_").lower(): v for k, v in overrides.items()}
            app = create_app(
                data_dir=data_dir,
                jwt_secret=SECRET,
                encoder="hashing",
                rate_limit_per_s=0,
                max_concurrency=0,
                **settings,
            )
            await stack.enter_async_context(app.router.lifespan_context(app))
            assert await _asgi_get(app, path, register) == 200
            for _ in range(200):  # warm: cached, memoized
                assert await _asgi_get(app, path, query.encode()) == 200
            apps[side] = app
        for _ in range(rounds):
            for side, app in apps.items():
                started = time.perf_counter()
                for _ in range(block):
                    await _asgi_get(app, path, query.encode())
                times[side].append((time.perf_counter() - started) / block * 1e6)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    sides = ("off", "metrics", "metrics+tracing", "metrics+tracing 10%")
    rates: dict[str, list[float]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        seed(data_dir)
        sink = stack.enter_context(otlp_sink())
        env = {
            "off": {"TAILOR_METRICS_ENABLED": "false"},
            "metrics": {},
            "metrics+tracing": {"TAILOR_TRACING": "true", "TAILOR_TRACING_ENDPOINT": sink},
            "metrics+tracing 10%": {
                "TAILOR_TRACING": "true",
                "TAILOR_TRACING_ENDPOINT": sink,
                "TAILOR_TRACING_SAMPLE_RATIO": "0.1",
            },
        }
        bases = {
            side: stack.enter_context(gateway_process(data_dir, **SERVER_ENV, **env[side]))
            for side in sides
        }
        path = _apq_path(ITEM_QUERY, id="i7")
        requests = {}
        for side, base in bases.items():
            # Register the persisted query (Apollo's second request) and warm the cache.
            reg = httpx.get(base + path + "&" + urlencode({"query": ITEM_QUERY}))
            assert reg.status_code == 200 and reg.json()["data"]["item"]["id"] == "i7", reg.text
            requests[side] = _request(path, urlsplit(base).netloc)
            metrics = httpx.get(base + "/metrics")
            assert metrics.status_code == (404 if side == "off" else 200), (side, metrics)
        for _ in range(args.rounds):
            for side in sides:
                rates[side].append(
                    asyncio.run(
                        throughput(
                            bases[side],
                            requests[side],
                            args.seconds,
                            args.connections,
                            b"x-cache: HIT",
                        )
                    )
                )
        exported = _Sink.spans_bytes
        server = asyncio.run(in_process(data_dir, env, args.rounds * 5, 300))
    base_rates = rates["off"]
    for side in sides:
        print(
            f"{side:<20} cached persisted GET: {statistics.median(rates[side]):9.0f} req/s "
            "(rounds: " + ", ".join(f"{r:.0f}" for r in rates[side]) + ")"
        )
    ratios = {
        side: statistics.median(r / b for r, b in zip(rates[side], base_rates, strict=True))
        for side in sides[1:]
    }
    metrics_ratio = ratios["metrics"]
    verdict = "met" if metrics_ratio >= TARGET else "NOT met"
    print(
        f"throughput ratio metrics/off: {metrics_ratio:.3f} (cost {100 * (1 - metrics_ratio):.1f}%; "
        f"target cost < 5%: {verdict})"
    )
    tracing_ratio = ratios["metrics+tracing"]
    print(
        f"throughput ratio metrics+tracing/off: {tracing_ratio:.3f} "
        f"(cost {100 * (1 - tracing_ratio):.1f}%; every request sampled, "
        f"{exported / 1e6:.1f} MB of spans exported by OTLP in all)"
    )
    sampled = ratios["metrics+tracing 10%"]
    print(
        f"throughput ratio metrics+tracing(10% sampled)/off: {sampled:.3f} "
        f"(cost {100 * (1 - sampled):.1f}%)"
    )
    print("server side alone (in-process ASGI calls, alternating blocks of 300):")
    for side in sides:
        print(f"{side:<20} {statistics.median(server[side]):8.1f} us per cached GET")
    for side in sides[1:]:
        ratio = statistics.median(b / t for b, t in zip(server["off"], server[side], strict=True))
        note = f"; target cost < 5%: {'met' if ratio >= TARGET else 'NOT met'}"
        print(
            f"throughput ratio {side}/off: {ratio:.3f} (cost {100 * (1 - ratio):.1f}%"
            + (note if side == "metrics" else "")
            + ")"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Overhead of every security limit on a typical query: limits on vs off, side by side in one run.

"on":  operation limits (tokens, depth, aliases, root fields, directives, duplicates, cost),
       rate limiter (enabled with a huge budget, so the bucket code runs but never refuses),
       concurrency limit, request timeout, API-key and Sec-GPC middleware, signed-in caller.
"off": limits_enabled=false and no middleware at all (the bare app).

Two workloads: the same query repeated (the parsed document is cached, the usual case), and a
fresh document per request (a comment with a counter defeats every cache, so parsing, the limit
walk and validation run each time: the worst case for the limits' share). Rounds alternate
between the two apps and the median round is reported, because this machine is noisy.

    python benchmarks/operation_limits.py [--quick]
Target: on/off <= 1.10.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.app import create_app
from gateway.security.auth import issue_token
from storage.types import ItemRecord

SECRET = "bench-secret-0123456789abcdef0123456789"
QUERY = "{ trending(first: 10) { item { id title categories price } score reason } me { id } }"


async def _seed(app: Any) -> None:
    services = app.state.services
    now = services.clock()
    services.store.upsert_items(
        [
            ItemRecord(
                f"i{k}",
                f"Item {k}",
                categories=("Shoes",),
                price=9.0 + k,
                created_at=now,
                updated_at=now,
            )
            for k in range(50)
        ]
    )
    events = [
        {
            "messageId": f"m{k}",
            "type": "view",
            "userId": f"u{k % 7}",
            "itemId": f"i{k % 50}",
            "timestamp": now,
        }
        for k in range(500)
    ]
    await services.ingest.ingest(events)


async def _round(
    client: httpx.AsyncClient, n: int, fresh: bool, start: int, headers: dict[str, str]
) -> float:
    t0 = time.perf_counter()
    for k in range(n):
        query = f"{QUERY} # {start + k}" if fresh else QUERY
        r = await client.post("/graphql", json={"query": query}, headers=headers)
        if r.status_code != 200:
            raise SystemExit(f"unexpected {r.status_code}: {r.text[:200]}")
    return (time.perf_counter() - t0) / n


async def main(quick: bool) -> None:
    rounds, per_round = (7, 60) if quick else (15, 200)
    with tempfile.TemporaryDirectory() as tmp:
        on = create_app(
            data_dir=Path(tmp) / "on",
            jwt_secret=SECRET,
            rate_limit_per_s=1e9,
            rate_limit_burst=10**9,
            edge_cache=False,
        )
        off = create_app(
            data_dir=Path(tmp) / "off",
            jwt_secret=SECRET,
            limits_enabled=False,
            rate_limit_per_s=0,
            max_concurrency=0,
            request_timeout_s=0,
            honor_gpc=False,
            edge_cache=False,
        )
        off.user_middleware.clear()  # the bare app: no security middleware at all
        headers = {"authorization": f"Bearer {issue_token(SECRET, 'u1', ttl_s=86400)}"}
        async with on.router.lifespan_context(on), off.router.lifespan_context(off):
            await _seed(on)
            await _seed(off)
            clients = {
                name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
                for name, app in (("on", on), ("off", off))
            }
            print(f"{rounds} rounds x {per_round} requests per app and workload (median round)")
            baseline: dict[bool, float] = {}
            for fresh in (False, True):
                times: dict[str, list[float]] = {"on": [], "off": []}
                counter = 0
                for name in ("on", "off"):  # warm-up
                    await _round(clients[name], 20, fresh, counter, headers)
                    counter += 20
                for i in range(rounds):
                    order = ("on", "off") if i % 2 == 0 else ("off", "on")
                    for name in order:
                        times[name].append(
                            await _round(clients[name], per_round, fresh, counter, headers)
                        )
                        counter += per_round
                med = {k: statistics.median(v) for k, v in times.items()}
                best = {k: min(v) for k, v in times.items()}
                baseline[fresh] = best["off"]
                label = (
                    "fresh document per request" if fresh else "repeated query (cached document)"
                )
                print(
                    f"{label:34s} off {med['off'] * 1e6:7.0f} us/req  on {med['on'] * 1e6:7.0f} us/req  "
                    f"ratio median {med['on'] / med['off']:.3f}  best-round {best['on'] / best['off']:.3f}"
                    "  (target <= 1.10)"
                )
            for c in clients.values():
                await c.aclose()
    _components(rounds)
    await _middleware(rounds, headers, baseline[False])


async def _middleware(rounds: int, headers: dict[str, str], request_s: float) -> None:
    """The security middleware stack around a trivial endpoint vs the endpoint alone."""
    from gateway.settings import load_settings
    from gateway.wiring import security_middleware

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    settings = load_settings(jwt_secret=SECRET, rate_limit_per_s=1e9, rate_limit_burst=10**9)
    wrapped: Any = endpoint
    for m in reversed(security_middleware(settings, lambda: None)):
        wrapped = m.cls(wrapped, *m.args, **m.kwargs)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "client": ("127.0.0.1", 1),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_m: Any) -> None:
        return None

    n, bare, guarded = 2000, [], []
    for _ in range(rounds):
        for out, app in ((bare, endpoint), (guarded, wrapped)):
            t0 = time.perf_counter()
            for _ in range(n):
                await app(scope, receive, send)
            out.append((time.perf_counter() - t0) / n)
    added = min(guarded) - min(bare)
    print(
        f"middleware (API keys, rate limit, concurrency, timeout, GPC): {added * 1e6:.1f} us/request "
        f"-> ratio {(request_s + added) / request_s:.3f} on the cached query ({request_s * 1e6:.0f} us)"
    )


def _components(rounds: int) -> None:
    """The limits' own work, timed in tight interleaved loops (far less sensitive to noise)."""
    from graphql import parse, validate

    from gateway.graphql.limits import OperationLimits, measure, parse_limited
    from resolvers.schema import build_schema

    schema = build_schema()._schema
    limits = OperationLimits()
    n = 200
    doc = parse(QUERY)
    full, walk, limited, plain = [], [], [], []
    for _ in range(rounds):
        for out, fn in (
            (full, lambda: validate(schema, parse(QUERY))),
            (walk, lambda: measure(schema, doc, limits)),
            (limited, lambda: parse_limited(QUERY, limits)),
            (plain, lambda: parse(QUERY)),
        ):
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            out.append((time.perf_counter() - t0) / n)
    b = min(full)
    e = min(walk) + max(0.0, min(limited) - min(plain))  # the walk + the parser's token counting
    print(
        f"per fresh document: parse+validate {b * 1e6:.0f} us, limits add {e * 1e6:.1f} us "
        f"-> ratio {(b + e) / b:.3f} (cached documents pay 0: the verdict is cached with the parse)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    asyncio.run(main(parser.parse_args().quick))

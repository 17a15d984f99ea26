"""A tiny catalog + CRM service speaking Tailor's upstream REST contract, with fault injection.

For ``tailor demo --upstream`` (it serves the demo world's ``items.jsonl`` and ``users.jsonl``)
and for the tests and the benchmark, which start it as a real process on loopback::

    python -m gateway.cli.upstream_demo --dir var/demo --port 8100 [--rename id=sku,title=name]

Contract (``kind`` is ``items`` or ``users``; see ``upstream/sources.py``)::

    GET /{kind}?ids=a,b                       -> {"{kind}": [row, ...]}
    GET /{kind}?updated_since=T&limit=N[&cursor=C]
                                              -> {"{kind}": [...], "next_cursor": C | null}

Listings are ordered by (updated_at, id); the cursor is the last (updated_at, id) of a page.

Test hooks (not part of the contract): ``GET /_stats`` (request counts and the query strings
seen), ``POST /_faults`` with ``{"latency_ms": 0, "status": null, "fail_next": 0,
"malformed": false, "stall": false, "bad_rows": [], "fail_cursor": null}`` -- a status for the
next ``fail_next`` requests (all when 0), garbage instead of JSON, a body that stops halfway
and hangs, rows made invalid by id, a 500 for one listing cursor -- and ``POST /_data`` with
``{"items": [...], "users": [...]}`` to upsert rows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from storage.timeutil import parse_timestamp


class Faults:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.latency_ms = 0.0
        self.status: int | None = None
        self.fail_next = 0
        self.malformed = False
        self.stall = False
        self.bad_rows: set[str] = set()
        self.fail_cursor: str | None = None
        self.failed = 0

    def update(self, doc: dict[str, Any]) -> None:
        self.latency_ms = float(doc.get("latency_ms", self.latency_ms))
        self.status = doc.get("status", self.status)
        self.fail_next = int(doc.get("fail_next", self.fail_next))
        self.malformed = bool(doc.get("malformed", self.malformed))
        self.stall = bool(doc.get("stall", self.stall))
        self.bad_rows = set(doc.get("bad_rows", self.bad_rows))
        self.fail_cursor = doc.get("fail_cursor", self.fail_cursor)
        self.failed = 0


def _stamp(row: dict[str, Any]) -> float:
    value = row.get("updated_at")
    return 0.0 if value in (None, "") else parse_timestamp(value)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def create_upstream_app(
    items: list[dict[str, Any]] | None = None,
    users: list[dict[str, Any]] | None = None,
    *,
    rename: dict[str, str] | None = None,
) -> Starlette:
    """The service over in-memory rows (Tailor field names; ``rename`` changes them on the wire)."""
    data: dict[str, dict[str, dict[str, Any]]] = {
        "items": {str(r["id"]): r for r in items or []},
        "users": {str(r["id"]): r for r in users or []},
    }
    faults = Faults()
    stats: dict[str, Any] = {"requests": 0, "by_kind": {"items": 0, "users": 0}, "queries": []}
    wire = rename or {}

    def out_row(row: dict[str, Any]) -> dict[str, Any]:
        row = {wire.get(k, k): v for k, v in row.items()}
        if str(row.get(wire.get("id", "id"))) in faults.bad_rows:
            row[wire.get("title", "title")] = None  # a required field gone: invalid
            row["price"] = "not a number"
        return row

    async def listing(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in data:
            return _json({"error": "not found"}, 404)
        stats["requests"] += 1
        stats["by_kind"][kind] += 1
        stats["queries"].append(f"{kind}?{request.url.query}")
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.status is not None and (
            faults.fail_next == 0 or faults.failed < faults.fail_next
        ):
            faults.failed += 1
            return _json({"error": "injected"}, int(faults.status))
        if faults.malformed:
            return Response(b'{"items": [ {"id": "i1", "title": ', media_type="application/json")
        q = request.query_params
        rows = data[kind]
        if "ids" in q:
            ids = [i for i in q["ids"].split(",") if i]
            doc: dict[str, Any] = {kind: [out_row(rows[i]) for i in ids if i in rows]}
        else:
            cursor = q.get("cursor")
            if cursor is not None and cursor == faults.fail_cursor:
                return _json({"error": "injected at cursor"}, 500)
            since = float(q.get("updated_since", "-inf"))
            limit = max(1, min(int(q.get("limit", "100")), 1000))
            ordered = sorted(((_stamp(r), k) for k, r in rows.items() if _stamp(r) >= since))
            if cursor:
                ts, _, last = cursor.partition("|")
                after = (float(ts), last)
                ordered = [o for o in ordered if o > after]
            page = ordered[:limit]
            nxt = f"{page[-1][0]!r}|{page[-1][1]}" if len(ordered) > limit else None
            doc = {kind: [out_row(rows[k]) for _, k in page], "next_cursor": nxt}
        body = orjson.dumps(doc)
        if faults.stall:

            async def stalled() -> AsyncIterator[bytes]:
                yield body[: len(body) // 2]
                await asyncio.sleep(3600)

            return StreamingResponse(
                stalled(), media_type="application/json", headers={"content-length": str(len(body))}
            )
        return Response(body, media_type="application/json")

    async def get_stats(request: Request) -> Response:
        return _json(stats)

    async def set_faults(request: Request) -> Response:
        doc = orjson.loads(await request.body() or b"{}")
        if doc.get("reset"):
            faults.reset()
            stats.update({"requests": 0, "by_kind": {"items": 0, "users": 0}, "queries": []})
        faults.update(doc)
        return _json({"ok": True})

    async def put_data(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        for kind in ("items", "users"):
            for row in doc.get(kind, []):
                data[kind][str(row["id"])] = row
        return _json({"ok": True})

    return Starlette(
        routes=[
            Route("/_stats", get_stats, methods=["GET"]),
            Route("/_faults", set_faults, methods=["POST"]),
            Route("/_data", put_data, methods=["POST"]),
            Route("/{kind}", listing, methods=["GET"]),
        ]
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh if line.strip()]


def app_from_dir(world: Path, rename: dict[str, str] | None = None) -> Starlette:
    """Serve ``items.jsonl`` and ``users.jsonl`` of a directory (the demo world)."""
    now = time.time()
    items = read_jsonl(world / "items.jsonl")
    for row in items:
        row.setdefault("updated_at", now)
    return create_upstream_app(items, read_jsonl(world / "users.jsonl"), rename=rename)


@contextlib.contextmanager
def upstream_process(world: Path, port: int, host: str = "127.0.0.1") -> Iterator[str]:
    """Run this service in a child process serving ``world``; yields its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli.upstream_demo",
            "--dir",
            str(world),
            "--host",
            host,
            "--port",
            str(port),
        ]
    )
    url = f"http://{host}:{port}"
    try:
        wait_until_serving(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def wait_until_serving(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Block until the service at ``url`` answers; RuntimeError if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/_stats", timeout=1)
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the upstream demo service did not start") from None
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="holds items.jsonl and users.jsonl")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--rename", default="", help="TAILOR=WIRE,... field names on the wire")
    args = parser.parse_args(argv)
    rename = dict(p.split("=", 1) for p in args.rename.split(",") if "=" in p)
    uvicorn.run(
        app_from_dir(args.dir, rename),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

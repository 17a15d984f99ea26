"""Ingestion over HTTP on the fleet shape: events/s of the embedded direct path (group commit in
the gateway, the baseline) against the event stream (NATS JetStream) applied by 1 and by 2
`tailor worker` processes, all measured in one run.

    python benchmarks/ingest_fleet.py [--quick] [--events 60000] [--database-url postgresql://…]

For the stream runs two rates are printed: *acknowledged* (the client's rate: every batch is in
the stream's file storage when answered) and *applied* (until the consumer lag is 0: every event
committed to the store and its profile updated). The stream runs use a stream of their own,
deleted afterwards. ``--database-url`` points the stream runs at PostgreSQL (the system of record
of a fleet; the baseline stays embedded SQLite). Needs NATS on 127.0.0.1:4222.

The clock of a stream run starts once its workers are consuming (each has a pull request waiting
on the group), as the direct run's starts once the gateway answers /readyz; the workers' start-up
(mostly importing the CLI) is printed on its own line. The load average is printed before and
after: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import SECRET, gateway_process, loadavg
from benchmarks.ingest import make_events, post_all
from storage.nats_stream import NatsEventStream

NATS_URL = "nats://127.0.0.1:4222"


async def consumers_waiting(env: dict[str, str], n: int, timeout_s: float = 300.0) -> float:
    """Seconds until ``n`` consumers wait on the group with a pull request (the workers started
    and are consuming): the throughput runs start after that, as the direct run starts after
    the gateway's /readyz; the start-up is printed on its own."""
    import nats
    from nats.js.errors import NotFoundError

    started = time.perf_counter()
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        while True:
            with contextlib.suppress(NotFoundError):
                info = await js.consumer_info(
                    env["TAILOR_EVENT_STREAM_NAME"], env["TAILOR_EVENT_STREAM_CONSUMER"]
                )
                if int(info.num_waiting or 0) >= n:
                    return time.perf_counter() - started
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"{n} workers were not consuming after {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


@contextlib.contextmanager
def workers(n: int, env: dict[str, str]) -> Iterator[None]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.main", "worker"],
            env={**os.environ, "TAILOR_JWT_SECRET": SECRET, "TAILOR_LOG_LEVEL": "warning", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=60)


async def drained(stream: NatsEventStream, total_messages: int) -> None:
    while True:
        lag = await stream.lag()
        if lag.total == 0 and lag.last_sequence >= total_messages:
            return
        await asyncio.sleep(0.02)


def direct(bodies: list[bytes], concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"TAILOR_ENCODER": "hashing"}
        with gateway_process(Path(tmp), **env) as base:
            return asyncio.run(post_all(base, bodies, concurrency))[1]


def streamed(
    bodies: list[bytes], concurrency: int, n_workers: int, database_url: str | None
) -> tuple[float, float, float]:
    """(seconds until acknowledged, seconds until applied, the workers' start-up seconds)
    with ``n_workers`` workers; the clock starts once they are consuming."""
    tag = secrets.token_hex(4)
    env = {
        "TAILOR_ENCODER": "hashing",
        "TAILOR_EVENT_STREAM_URL": NATS_URL,
        "TAILOR_EVENT_STREAM_NAME": f"BENCH_{tag}",
        "TAILOR_EVENT_STREAM_SUBJECT": f"bench.{tag}",
        "TAILOR_EVENT_STREAM_CONSUMER": f"bench-{tag}",
        "TAILOR_EVENT_STREAM_INLINE_CONSUMER": "false",
    }
    if database_url:
        env["TAILOR_DATABASE_URL"] = database_url

    async def run(base: str) -> tuple[float, float, float]:
        startup = await consumers_waiting(env, n_workers)
        stream = NatsEventStream(
            NATS_URL,
            stream=env["TAILOR_EVENT_STREAM_NAME"],
            subject=env["TAILOR_EVENT_STREAM_SUBJECT"],
            consumer=env["TAILOR_EVENT_STREAM_CONSUMER"],
        )
        try:
            start = time.perf_counter()
            acked = (await post_all(base, bodies, concurrency))[1]
            # Each batch is one stream message (under 256 KB), and an applied note may follow.
            await drained(stream, len(bodies))
            return acked, time.perf_counter() - start, startup
        finally:
            await stream.delete()
            await stream.close()

    with (
        tempfile.TemporaryDirectory() as tmp,
        gateway_process(Path(tmp), **env) as base,
        workers(n_workers, {**env, "TAILOR_DATA_DIR": tmp}),
    ):
        return asyncio.run(run(base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="20,000 events")
    ap.add_argument("--database-url", help="PostgreSQL for the stream runs (default: SQLite)")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.events
    events = make_events(n)
    bodies = [orjson.dumps(events[i : i + args.batch]) for i in range(0, n, args.batch)]
    store = "PostgreSQL" if args.database_url else "SQLite"
    print(
        f"{n} events in batches of {args.batch}, {args.concurrency} concurrent clients; "
        f"load average {loadavg()}"
    )
    base_s = direct(bodies, args.concurrency)
    base_rate = n / base_s
    print(f"embedded direct (SQLite, group commit)       {base_rate:9.0f} events/s   1.00x")
    for k in (1, 2):
        acked_s, applied_s, startup_s = streamed(bodies, args.concurrency, k, args.database_url)
        print(
            f"stream + {k} worker{'s' if k > 1 else ' '} start-up until consuming {startup_s:.1f} s"
        )
        print(
            f"stream + {k} worker{'s' if k > 1 else ' '} ({store}) acknowledged "
            f"{n / acked_s:9.0f} events/s  {base_s / acked_s:5.2f}x"
        )
        print(
            f"stream + {k} worker{'s' if k > 1 else ' '} ({store}) applied      "
            f"{n / applied_s:9.0f} events/s  {base_s / applied_s:5.2f}x"
        )
    print(f"load average {loadavg()}")


if __name__ == "__main__":
    main()

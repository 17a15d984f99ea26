"""Where a stream consumer's time goes: the `tailor worker` apply path, in one process.

    python benchmarks/profile_stream.py [--events 20000] [--batch 500] [--pyinstrument]

Publishes ``--events`` validated events to a stream of its own (NATS JetStream on
127.0.0.1:4222, one message per ``--batch`` events, as the gateway does per request), then runs a
:class:`profiles.stream.StreamConsumer` built like `tailor worker` builds it (same settings,
same services, a fresh SQLite store) until every event is applied, and prints:

- the apply rate, against the same ``IngestionService.write`` calls on the same events without
  the stream (a fresh store, the batches written one after another: the apply path's ceiling);
- the consumer's wall time split into fetch, write (group commit), announce and ack, the number
  of fetches and deliveries per fetch, and the time the event loop idled in fetches;
- with ``--pyinstrument``, the profile of the consumer's run.

With ``--concurrent N`` the events are published by N tasks while the consumer runs (the shape of
`benchmarks/ingest_fleet.py`, without HTTP): the consumer then mostly finds one or two messages
per fetch.

The stream is deleted afterwards. The load average is printed; compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._server import loadavg
from benchmarks.ingest import make_events
from gateway.fleet import process_origin
from gateway.settings import Settings, load_settings
from gateway.wiring import build_services
from profiles.stream import StreamConsumer
from storage.stream import Applied, Delivery, EventStream, StreamLag
from storage.types import EventRecord

NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class Timings:
    fetch_s: float = 0.0
    empty_fetch_s: float = 0.0
    announce_s: float = 0.0
    ack_s: float = 0.0
    write_s: float = 0.0
    fetches: int = 0
    empty_fetches: int = 0
    sizes: list[int] = field(default_factory=list)


class TimedStream:
    """The real stream with the consumer's calls timed (everything else passes through)."""

    def __init__(self, inner: EventStream, t: Timings) -> None:
        self.inner, self.t = inner, t

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        start = time.perf_counter()
        out = await self.inner.fetch(max_messages, timeout_s)
        took = time.perf_counter() - start
        self.t.fetches += 1
        if out:
            self.t.fetch_s += took
            self.t.sizes.append(len(out))
        else:
            self.t.empty_fetch_s += took
            self.t.empty_fetches += 1
        return out

    async def announce(self, applied: Applied) -> None:
        start = time.perf_counter()
        await self.inner.announce(applied)
        self.t.announce_s += time.perf_counter() - start

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        start = time.perf_counter()
        await self.inner.ack(deliveries)
        self.t.ack_s += time.perf_counter() - start

    async def publish(self, events: Sequence[EventRecord]) -> None:
        await self.inner.publish(events)

    async def lag(self) -> StreamLag:
        return await self.inner.lag()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def settings_for(data_dir: Path, stream_env: dict[str, str] | None) -> Settings:
    env = {"TAILOR_ENCODER": "hashing", "TAILOR_LOG_LEVEL": "warning", **(stream_env or {})}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings(None, data_dir=data_dir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def batches(n: int, size: int) -> list[list[dict[str, object]]]:
    events = make_events(n)
    return [events[i : i + size] for i in range(0, n, size)]


async def ceiling(raw_batches: list[list[dict[str, object]]]) -> tuple[float, int]:
    """Seconds for ``IngestionService.write`` of the same events, batch after batch, no stream."""
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(settings_for(Path(tmp), None))
        services.ingest.start()
        try:
            records = [services.ingest.validate(b)[2] for b in raw_batches]
            start = time.perf_counter()
            accepted = 0
            for events in records:
                accepted += sum(o == "accepted" for o in await services.ingest.write(events))
            return time.perf_counter() - start, accepted
        finally:
            services.ingest.stop()
            services.store.close()


async def consume(
    raw_batches: list[list[dict[str, object]]],
    fetch_batch: int | None,
    profile: bool,
    concurrent: int,
) -> None:
    tag = secrets.token_hex(4)
    stream_env = {
        "TAILOR_EVENT_STREAM_URL": NATS_URL,
        "TAILOR_EVENT_STREAM_NAME": f"PROF_{tag}",
        "TAILOR_EVENT_STREAM_SUBJECT": f"prof.{tag}",
        "TAILOR_EVENT_STREAM_CONSUMER": f"prof-{tag}",
    }
    n = sum(len(b) for b in raw_batches)
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(Path(tmp), stream_env)
        services = build_services(settings)
        stream = services.ingest.stream
        assert stream is not None
        try:
            records = [services.ingest.validate(b)[2] for b in raw_batches]

            async def publish_all() -> None:
                start = time.perf_counter()
                queue = list(reversed(records))

                async def client() -> None:
                    while queue:
                        await stream.publish(queue.pop())

                await asyncio.gather(*(client() for _ in range(concurrent or 1)))
                print(
                    f"published {n} events as {len(records)} messages in "
                    f"{time.perf_counter() - start:.2f} s"
                    + (f" by {concurrent} concurrent publishers" if concurrent else "")
                )

            if not concurrent:
                await publish_all()
            t = Timings()
            consumer = StreamConsumer(
                TimedStream(stream, t),  # type: ignore[arg-type]
                services.ingest,
                origin=process_origin("profile"),
                batch=fetch_batch or settings.event_stream_batch,
            )
            write = services.ingest.write

            async def timed_write(events: list[EventRecord]) -> list[str]:
                began = time.perf_counter()
                try:
                    return await write(events)
                finally:
                    t.write_s += time.perf_counter() - began

            services.ingest.write = timed_write  # type: ignore[method-assign]
            services.ingest.start()
            stop = asyncio.Event()

            async def until_applied() -> None:
                s = consumer.stats
                while s.accepted + s.duplicates + s.other < n:
                    await asyncio.sleep(0.005)
                stop.set()

            profiler = None
            if profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="enabled")
                profiler.start()
            cpu0, start = time.process_time(), time.perf_counter()
            await asyncio.gather(
                consumer.run(stop), until_applied(), *([publish_all()] if concurrent else [])
            )
            took, cpu = time.perf_counter() - start, time.process_time() - cpu0
            if profiler is not None:
                profiler.stop()
            sizes = t.sizes
            print(
                f"consumer: {n} events applied in {took:.2f} s = {n / took:,.0f} events/s; "
                f"process CPU {cpu:.2f} s ({cpu / n * 1e6:.0f} us/event)"
            )
            print(
                f"  fetches {t.fetches} ({t.empty_fetches} empty, {t.empty_fetch_s:.2f} s), "
                f"deliveries per fetch: mean {sum(sizes) / max(1, len(sizes)):.1f}, "
                f"min {min(sizes, default=0)}, max {max(sizes, default=0)} "
                f"(batch setting {consumer.batch})"
            )
            for label, secs in (
                ("fetch (non-empty)", t.fetch_s),
                ("write (group commit)", t.write_s),
                ("announce", t.announce_s),
                ("ack", t.ack_s),
            ):
                print(f"  {label:<22} {secs:7.2f} s  {secs / took:6.1%}")
            if profiler is not None:
                print(profiler.output_text(unicode=False, color=False, show_all=False))
        finally:
            services.ingest.stop()
            delete = getattr(stream, "delete", None)
            if delete is not None:
                await delete()
            await stream.close()
            services.store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=500, help="events per stream message")
    ap.add_argument("--fetch", type=int, default=None, help="messages per fetch (the setting)")
    ap.add_argument("--pyinstrument", action="store_true")
    ap.add_argument(
        "--concurrent",
        type=int,
        default=0,
        help="publish from this many tasks while the consumer runs (as under the benchmark's "
        "load) instead of publishing everything first",
    )
    args = ap.parse_args()
    raw = batches(args.events, args.batch)
    print(f"load average: {loadavg()}")
    base_s, accepted = asyncio.run(ceiling(raw))
    print(
        f"no stream: IngestionService.write, batch after batch: {accepted} events in "
        f"{base_s:.2f} s = {accepted / base_s:,.0f} events/s"
    )
    asyncio.run(consume(raw, args.fetch, args.pyinstrument, args.concurrent))
    print(f"load average: {loadavg()}")


if __name__ == "__main__":
    main()

"""`tailor worker`: apply the event stream's events to the store (docs/FLEET.md).

Any number of workers (and gateways with ``event_stream_inline_consumer``) share one durable
consumer group; each delivery is applied by one of them. SIGTERM or SIGINT stops a worker
gracefully: the batch in hand is committed and acknowledged first. ``--status`` prints the
consumer group's lag and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal

from gateway.cli.common import Common, console, settings_from
from gateway.fleet import stream_status
from gateway.settings import Settings
from gateway.wiring import build_services
from profiles.stream import StreamConsumer

log = logging.getLogger("tailor.worker")

NOT_CONFIGURED = (
    "the event stream is not configured: set TAILOR_EVENT_STREAM_URL (e.g. "
    "nats://127.0.0.1:4222) for the gateways and the workers alike; without it the gateway "
    "writes events itself and there is nothing for a worker to do"
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Common) -> None:
    p = sub.add_parser(
        "worker",
        help="apply the event stream to profiles (fleet)",
        description="Consume the event stream (TAILOR_EVENT_STREAM_URL) and apply its events "
        "to the store; stops gracefully on SIGTERM. --status prints the consumer lag.",
    )
    common(p)
    p.add_argument("--status", action="store_true", help="print the consumer lag (JSON) and exit")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.event_stream_url:
        console.print(f"[red]configuration error:[/red] {NOT_CONFIGURED}")
        return 2
    if args.status:
        return asyncio.run(_status(settings))
    return asyncio.run(_work(settings))


async def _status(settings: Settings) -> int:
    from gateway.wiring import event_stream

    stream = event_stream(settings)
    assert stream is not None
    try:
        status = await stream_status(stream)
    finally:
        await stream.close()
    print(json.dumps(status, indent=2))
    return 0 if status["reachable"] else 1


async def _work(settings: Settings) -> int:
    services = build_services(settings, role="worker")
    stream = services.ingest.stream
    assert stream is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = StreamConsumer(
        stream,
        services.ingest,
        origin=services.ingest.origin,
        batch=settings.event_stream_batch,
    )
    services.ingest.start()
    log.info(
        "tailor worker: consuming %s (%s, group %s) into %s",
        settings.event_stream_url,
        settings.event_stream_name,
        settings.event_stream_consumer,
        settings.db_path,
    )
    try:
        await consumer.run(stop)
    finally:
        await stream.close()
        services.ingest.stop()
        services.store.close()
    s = consumer.stats
    log.info(
        "tailor worker stopped: %d deliveries, %d events applied, %d duplicates skipped",
        s.deliveries,
        s.accepted,
        s.duplicates,
    )
    return 0

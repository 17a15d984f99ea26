"""A gateway on the event stream (``event_stream_url``; docs/FLEET.md): the consumer it runs
itself (unless ``event_stream_inline_consumer`` is off and ``tailor worker`` processes apply the
events), the feed of the other processes' commits, and the status `/readyz` and `tailor worker
--status` show.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.settings import Settings
from profiles.ingest import IngestionService
from profiles.stream import AppliedFeed, StreamConsumer
from storage.stream import EventStream, StreamUnavailable, process_origin

__all__ = ["StreamRuntime", "process_origin", "stream_status"]

log = logging.getLogger("tailor.fleet")


async def stream_status(stream: EventStream, timeout_s: float = 2.0) -> dict[str, Any]:
    """The consumer group's lag as JSON, or ``{"reachable": false, "error": …}``."""
    try:
        lag = await asyncio.wait_for(stream.lag(), timeout_s)
    except (StreamUnavailable, TimeoutError) as exc:
        return {"reachable": False, "error": str(exc) or "timed out"}
    return {"reachable": True, **lag.as_json()}


class StreamRuntime:
    """What a gateway runs on the stream; started and closed by the app's lifespan."""

    def __init__(self, settings: Settings, ingest: IngestionService, stream: EventStream) -> None:
        self.stream = stream
        # The ingestion service's name for this process: the notes of its direct writes
        # (identify) and of this consumer are both skipped by this feed.
        self.origin = ingest.origin
        self.feed = AppliedFeed(stream, ingest, origin=self.origin)
        self.consumer = (
            StreamConsumer(stream, ingest, origin=self.origin, batch=settings.event_stream_batch)
            if settings.event_stream_inline_consumer
            else None
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        try:
            # Subscribed before the app answers: nothing another process applies after this
            # instance reports ready is missed.
            await self.feed.start()
        except StreamUnavailable as exc:
            log.warning("event stream unreachable at start-up (retrying): %s", exc)
        self._tasks.append(
            asyncio.create_task(self.feed.run(self._stop), name="tailor-applied-feed")
        )
        if self.consumer is not None:
            self._tasks.append(
                asyncio.create_task(self.consumer.run(self._stop), name="tailor-stream-consumer")
            )

    async def status(self) -> dict[str, Any]:
        out = await stream_status(self.stream)
        out["origin"] = self.origin  # this process (host, pid)
        out["inline_consumer"] = self.consumer is not None
        out["replayed_from_others"] = self.feed.replayed
        if self.consumer is not None:
            out["applied_here"] = self.consumer.stats.accepted
        return out

    async def aclose(self) -> None:
        """Finish the consumer's batch in hand (commit + ack), stop the feed, disconnect."""
        self._stop.set()
        if self.consumer is not None and self._tasks:
            consumer_task = self._tasks[-1]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(consumer_task), 30)
        for task in self._tasks:
            task.cancel()
        # Bounded: a task stuck in a (re)connect must not hold the shutdown.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.stream.close()

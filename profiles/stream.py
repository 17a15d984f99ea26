"""Consumers of the event stream (``storage/stream.py``): the one that applies events to the store,
and the feed that keeps each gateway's derived state in step with the rest of the fleet.

:class:`StreamConsumer` fetches deliveries of the shared consumer group, writes their events
through :meth:`IngestionService.write` (group commit, messageId dedup, profile updates), announces
what the store accepted, and only then acknowledges the deliveries: a crash anywhere before the ack
redelivers, and the dedup makes the second application a no-op (effectively-once profiles).

:class:`AppliedFeed` reads the announcements of every other consumer and replays them into this
process's ingestion listeners (trending, segment re-assignment and popularity, cache purges),
with the profile states read back from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from profiles.ingest import IngestionService, changed_profiles
from profiles.state import ProfileState
from profiles.types import IngestUnavailable
from storage.stream import Applied, Delivery, EventStream, StreamUnavailable
from storage.threads import in_thread
from storage.types import StorageError

__all__ = ["AppliedFeed", "ConsumerStats", "StreamConsumer", "changed_profiles"]

log = logging.getLogger("tailor.stream")


@dataclass
class ConsumerStats:
    deliveries: int = 0
    accepted: int = 0
    duplicates: int = 0  # redeliveries and replayed messageIds: stored once, applied once
    other: int = 0  # conflicts (same messageId, other payload) and refused identifies
    redelivered: int = 0  # deliveries seen more than once (a consumer died before its ack)


class StreamConsumer:
    """Applies the stream's events to the store; one per consumer process (or gateway)."""

    def __init__(
        self,
        stream: EventStream,
        ingest: IngestionService,
        *,
        origin: str,
        batch: int = 64,
        fetch_timeout_s: float = 1.0,
        retry_s: float = 1.0,
    ) -> None:
        self.stream = stream
        self.ingest = ingest
        self.origin = origin
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_s = retry_s
        self.stats = ConsumerStats()
        self._failing = False

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and apply until ``stop`` is set; the batch in hand is finished (committed and
        acknowledged) first, so a graceful stop leaves nothing in flight."""
        while not stop.is_set():
            try:
                deliveries = await self.stream.fetch(self.batch, self.fetch_timeout_s)
                if deliveries:
                    await self.apply(deliveries)
                if self._failing:
                    log.info("event stream consumer recovered")
                    self._failing = False
            except (StreamUnavailable, IngestUnavailable, StorageError) as exc:
                # Not acknowledged: the deliveries come back after the stream's ack wait.
                if not self._failing:
                    log.warning("event stream consumer failing, will retry: %s", exc)
                    self._failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)

    async def apply(self, deliveries: list[Delivery]) -> None:
        """Commit, announce, acknowledge (in that order)."""
        events = [ev for d in deliveries for ev in d.events]
        outcomes = await self.ingest.write(events)
        accepted = [ev for ev, o in zip(events, outcomes, strict=True) if o == "accepted"]
        s = self.stats
        s.deliveries += len(deliveries)
        s.redelivered += sum(1 for d in deliveries if d.attempt > 1)
        s.accepted += len(accepted)
        s.duplicates += sum(1 for o in outcomes if o == "duplicate")
        s.other += sum(1 for o in outcomes if o not in ("accepted", "duplicate"))
        if accepted:
            try:
                await self.stream.announce(
                    Applied(self.origin, accepted, changed_profiles(accepted))
                )
            except StreamUnavailable as exc:
                # Committed already: the other gateways catch up from the store (caches by TTL,
                # trending at restart). Acknowledging is still right.
                log.warning("applied note lost: %s", exc)
        await self.stream.ack(deliveries)


class AppliedFeed:
    """Replays other processes' commits into this process's ingestion listeners."""

    def __init__(
        self,
        stream: EventStream,
        ingest: IngestionService,
        *,
        origin: str,
        retry_s: float = 1.0,
        on_applied: Callable[[Applied], None] | None = None,
    ) -> None:
        self.stream = stream
        self.ingest = ingest
        self.origin = origin
        self.retry_s = retry_s
        self.on_applied = on_applied
        self.replayed = 0  # events replayed from other processes
        self._notes: AsyncIterator[Applied] | None = None

    async def start(self) -> None:
        """Subscribe now: every note announced after this returns is replayed by :meth:`run`."""
        self._notes = await self.stream.tail()

    def _states(self, keys: list[str]) -> dict[str, ProfileState | None]:
        # One query for the note's profiles (an import's note names up to a thousand).
        docs = self.ingest.store.get_profile_states(keys) if keys else {}
        return {key: ProfileState.from_json(docs[key]) if key in docs else None for key in keys}

    async def run(self, stop: asyncio.Event) -> None:
        """Replay notes until ``stop`` is set (resubscribing, from then on, after a failure)."""
        while not stop.is_set():
            try:
                notes = self._notes or await self.stream.tail()
                self._notes = None
                async for applied in notes:
                    if applied.origin == self.origin:
                        continue  # this process's own commit: its listeners already ran
                    await in_thread(self._replay, applied)  # a cancelled feed lets it finish
            except (StreamUnavailable, StorageError, OSError) as exc:
                log.warning("applied-note feed interrupted, resubscribing: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.retry_s)

    def _replay(self, applied: Applied) -> None:
        self.ingest.replay(applied.events, self._states(applied.profile_keys))
        self.replayed += len(applied.events)
        if self.on_applied is not None:
            self.on_applied(applied)

"""The one ingestion service behind every entry point (REST, GraphQL, CLI imports).

Flow for a batch: validate every event (rejects are answered, never stored) -> hand the valid
ones to the writer -> the writer groups whatever batches are waiting into ONE store transaction
(group commit: a single fsync for many requests) that inserts the events (dedup on messageId,
conflict on a different payload), links identities and updates the affected profiles -> only
after COMMIT are the waiting callers answered. A crash before COMMIT loses only unacknowledged
work; a batch is never half-written because each group is one transaction.

Listeners (trending, caches) are called in the writer thread after COMMIT and before the callers
are answered, so the caller's next request sees the new state (read-your-writes). Listeners must
be thread-safe and quick.

Identity. An anonymous id is a claim anyone can make, so an event that carries only an
``anonymousId`` is stored on the anonymous profile it names (``anon:<id>``), never on the user that
id was once linked to: after a merge, anonymous-only traffic with that id builds a fresh
anonymous profile. Only operator imports (:meth:`IngestionService.ingest_sync`, a trusted
replay of a log) follow links to attribute such events to the linked user. An accepted
``identify`` links its anonymous id to its user and joins the anonymous history to the user's
profile; a link is never moved to another user (the store answers that identify ``rejected``).
Who may send an identify for which anonymous id is the caller's rule
(``resolvers.context.Viewer.authorize_event``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from cachetools import LRUCache

from observability.metrics import count_ingest
from profiles.events import TraitsFilter, validate_event
from profiles.state import CategoryLookup, ProfileState
from profiles.types import (
    IDENTITY_TAKEN,
    INTERNAL_MESSAGE_PREFIX,
    BatchResult,
    BatchTooLarge,
    EventResult,
    IngestConfig,
    IngestUnavailable,
    ProfileConfig,
)
from storage.fields import FieldError
from storage.stream import Applied, EventStream, StreamUnavailable, process_origin
from storage.types import JSON, EventRecord, Store, anonymous_key

T = TypeVar("T")

log = logging.getLogger("tailor.ingest")

Listener = Callable[[list[EventRecord]], None]
ProfileListener = Callable[[dict[str, ProfileState | None]], None]
# Per event of a batch: may it be tracked (False: answered "dropped", never stored).
ConsentCheck = Callable[[Sequence[EventRecord]], list[bool]]
Authorize = Callable[[EventRecord], "tuple[str, str] | None"]

# Events per applied note of a direct write (an import batch is several notes): a note's first
# message carries its profile keys, so this bounds it well under the broker's message size.
NOTE_EVENTS = 1000
# After a note could not be published, the next ones are not tried for this long (each try on an
# unreachable stream waits for its connect attempts, ~2.5 s: an import would pay it per batch).
NOTES_RETRY_S = 10.0


def changed_profiles(accepted: Sequence[EventRecord]) -> list[str]:
    """The profile keys a commit of ``accepted`` events changed (identify also merges the
    anonymous profile into the user's)."""
    keys: dict[str, None] = {}
    for ev in accepted:
        keys[ev.profile_key] = None
        if ev.type == "identify" and ev.anonymous_id and ev.user_id:
            keys[anonymous_key(ev.anonymous_id)] = None
            keys[ev.user_id] = None
    return list(keys)


@dataclasses.dataclass
class _Job:
    events: list[EventRecord]
    future: Future[list[str]]
    follow_links: bool = False  # attribute anonymous-only events to a linked user (imports)


def _message_id(raw: Any) -> str | None:
    mid = raw.get("messageId") if isinstance(raw, dict) else None
    return mid if isinstance(mid, str) and len(mid) <= 256 else None


class IngestionService:
    """Validates, deduplicates, durably stores events and keeps profiles current."""

    def __init__(
        self,
        store: Store,
        *,
        config: IngestConfig | None = None,
        profile_config: ProfileConfig | None = None,
        categories: CategoryLookup = lambda _item: (),
        clock: Callable[[], float] = time.time,
        tracking_allowed: ConsentCheck | None = None,
        state_cache_size: int = 10_000,
        traits_filter: TraitsFilter | None = None,
        stream: EventStream | None = None,
        origin: str | None = None,
        prefetch_items: Callable[[list[str]], None] | None = None,
    ) -> None:
        """``traits_filter``: applied to the traits of every identify event before it is
        fingerprinted or stored (the wiring passes the PII hasher, as it does to the store).

        ``stream``: when set, :meth:`ingest` appends valid events to this durable stream and
        answers once the stream acknowledged them; consumers apply them through :meth:`write`
        (``profiles/stream.py``). Without it, events are group-committed to the store.
        What this service writes to the store directly (:meth:`link`, :meth:`ingest_sync`) is
        then announced on the stream's applied notes after the COMMIT, named ``origin`` (this
        process; its own feed skips them), so every other gateway updates its in-memory state.

        ``prefetch_items``: called once per write group with the group's item ids before
        ``categories`` is asked about each (the wiring passes the catalog's bulk loader)."""
        self.prefetch_items = prefetch_items
        self.store = store
        self.stream = stream
        self.origin = origin or process_origin("process")
        self.traits_filter = traits_filter
        self.config = config or IngestConfig()
        self.profile_config = profile_config or ProfileConfig()
        self.categories = categories
        self.clock = clock
        self.tracking_allowed = tracking_allowed
        self._listeners: list[Listener] = []
        self._profile_listeners: list[ProfileListener] = []
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # serialises writes (writer thread and direct callers)
        # profile key -> (stored version, state); only touched by whoever holds self._lock
        self._state_cache: LRUCache[str, tuple[float, ProfileState]] = LRUCache(state_cache_size)
        self._touched: set[str] = set()
        self._pending: dict[str, ProfileState] = {}
        # The event loop (in a thread of its own) announcing direct writes of sync callers.
        self._notes_loop: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
        self._notes_down_until = 0.0  # monotonic time; see NOTES_RETRY_S

    # ------------------------------------------------------------------ lifecycle
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def subscribe_profiles(self, listener: ProfileListener) -> None:
        """Called after each commit with the profiles it changed (key -> new state; None for a
        profile that no longer exists: an anonymous profile merged into a user's by identify).

        The states are the writer's own objects: listeners must read, never mutate them.
        """
        self._profile_listeners.append(listener)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="tailor-ingest-writer", daemon=True
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the writer thread is alive (events can be acknowledged)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        """Batches waiting for the writer thread (the ``tailor_ingest_queue_depth`` gauge)."""
        return self._queue.qsize()

    def stop(self) -> None:
        """Stop the writer after it has committed every batch queued before this call (the
        queue is FIFO: graceful shutdown drains it)."""
        if self._thread is not None:
            waiting = self._queue.qsize()
            if waiting:
                log.info("ingest writer: draining %d queued batch(es) before stopping", waiting)
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self._notes_loop is not None and self.stream is not None:
            loop, thread = self._notes_loop
            self._notes_loop = None
            with contextlib.suppress(Exception):  # closing: a stuck stream must not hold it
                asyncio.run_coroutine_threadsafe(self.stream.close(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()

    # ------------------------------------------------------------------ public API
    def validate(
        self, raws: Sequence[Any], authorize: Authorize | None = None, *, limit: bool = True
    ) -> tuple[list[EventResult | None], list[int], list[EventRecord]]:
        """Validate a batch: per index either a rejection result or a record to write.

        Returns the results (None where the event is to be written), then the positions of the
        events to write and their records, as two parallel lists (no pair per event)."""
        if limit and len(raws) > self.config.max_batch_events:
            raise BatchTooLarge(
                f"batch has {len(raws)} events; the limit is {self.config.max_batch_events} per request"
            )
        now = self.clock()
        custom_types, skew = self.config.custom_event_types, self.config.clock_skew_s
        traits_filter = self.traits_filter
        results: list[EventResult | None] = [None] * len(raws)
        positions: list[int] = []
        records: list[EventRecord] = []
        keep, place = records.append, positions.append
        for i, raw in enumerate(raws):
            try:
                ev = validate_event(
                    raw,
                    received_at=now,
                    custom_types=custom_types,
                    clock_skew_s=skew,
                    traits_filter=traits_filter,
                )
            except FieldError as exc:
                results[i] = EventResult(i, "rejected", _message_id(raw), exc.field, exc.reason)
                continue
            except Exception:  # a validator bug must cost this event, never the whole batch
                log.exception("event %d could not be validated", i)
                results[i] = EventResult(
                    i, "rejected", _message_id(raw), "-", "the event could not be validated"
                )
                continue
            if authorize is not None:
                denied = authorize(ev)
                if denied is not None:
                    results[i] = EventResult(i, "rejected", ev.message_id, denied[0], denied[1])
                    continue
            place(i)
            keep(ev)
        if self.tracking_allowed is not None and records:
            # Consent for the whole batch at once (one store query for its users).
            allowed = self.tracking_allowed(records)
            if not all(allowed):
                tracked_at: list[int] = []
                tracked: list[EventRecord] = []
                for i, ev, ok in zip(positions, records, allowed, strict=True):
                    if ok:
                        tracked_at.append(i)
                        tracked.append(ev)
                    else:
                        results[i] = EventResult(
                            i, "dropped", ev.message_id, None, "no tracking consent"
                        )
                positions, records = tracked_at, tracked
        return results, positions, records

    async def ingest(self, raws: Sequence[Any], authorize: Authorize | None = None) -> BatchResult:
        """Validate and durably store a batch; returns only after the COMMIT.

        Anonymous-only events stay on their anonymous profile (see the module docstring)."""
        results, positions, records = self.validate(raws, authorize)
        # The raw events are not needed past validation: this frame does not hold them while
        # it waits for the writer (fewer live objects for the garbage collector to walk).
        del raws
        if records:
            if self.stream is not None:
                outcomes = await self._publish(records)
            else:
                outcomes = await self._submit(records)
            self._fill(results, positions, records, outcomes)
        done = [r for r in results if r is not None]
        count_ingest(r.status for r in done)
        return BatchResult(done)

    async def _publish(self, events: list[EventRecord]) -> list[str]:
        """Append to the stream; every event answers ``accepted`` (durably queued). The consumer
        resolves duplicates by messageId, so a replayed event is applied once."""
        assert self.stream is not None
        try:
            await self.stream.publish(events)
        except StreamUnavailable as exc:
            raise IngestUnavailable(f"events could not be queued: {exc}") from exc
        return ["accepted"] * len(events)

    async def write(self, events: list[EventRecord]) -> list[str]:
        """Store already validated events (a stream consumer's deliveries) like :meth:`ingest`
        does: group commit, listeners, then the store's outcome per event (``accepted``,
        ``duplicate``, ``conflict``, ``refused``). Returns only after the COMMIT."""
        return await self._submit(events)

    def replay(self, events: list[EventRecord], states: dict[str, ProfileState | None]) -> None:
        """Feed another process's commit to this process's listeners (the fleet's applied
        notes): ``events`` the store accepted, ``states`` the profiles it changed as stored."""
        with self._lock:  # never interleaved with this process's own notifications
            for key in states:
                self._state_cache.pop(key, None)
            self._notify(events, states)

    async def link(self, anonymous_id: str, user_id: str) -> EventResult:
        """Store the server's own identify of ``anonymous_id`` as ``user_id`` (the identify
        mutation; the caller checked who may claim the id).

        Its message id, ``_identify:<anonymousId>:<userId>``, is in the internal namespace
        (:data:`INTERNAL_MESSAGE_PREFIX`) no client event can occupy, so a planted event cannot
        block it; linking the same pair again answers ``duplicate``. An id linked to another
        user answers ``rejected`` (field ``anonymousId``, reason :data:`IDENTITY_TAKEN`).
        With a stream, an accepted link is announced on its applied notes before this returns."""
        raw = {"type": "identify", "userId": user_id, "anonymousId": anonymous_id}
        try:
            ev = validate_event(
                raw,
                received_at=self.clock(),
                clock_skew_s=self.config.clock_skew_s,
                internal_id=f"{INTERNAL_MESSAGE_PREFIX}identify:{anonymous_id}:{user_id}",
            )
        except FieldError as exc:
            return EventResult(0, "rejected", None, exc.field, exc.reason)
        results: list[EventResult | None] = [None]
        self._fill(results, [0], [ev], await self._submit([ev]))
        result = results[0]
        assert result is not None
        count_ingest([result.status])
        if result.status == "accepted":
            # Written here, not through the stream: the other gateways learn it from the note
            # (shielded: a caller that goes away after the COMMIT does not take the note along).
            await asyncio.shield(self._announce([ev]))
        return result

    async def _submit(self, events: list[EventRecord], follow_links: bool = False) -> list[str]:
        if self._thread is None:
            outcomes, _ = await asyncio.to_thread(self._write_direct, events, follow_links)
            return outcomes
        fut: Future[list[str]] = Future()
        self._queue.put(_Job(events, fut, follow_links))
        return await asyncio.wrap_future(fut)

    def ingest_sync(self, raws: Sequence[Any]) -> BatchResult:
        """The same as :meth:`ingest` for callers without an event loop (CLI imports).

        No batch-size limit: file imports use large batches so one transaction (one fsync and
        one profile rewrite per user) covers thousands of rows. An import is the operator's
        replay of a log, so anonymous-only events follow identity links to their user.
        With a stream, the committed batch is announced on its applied notes before this returns.
        """
        results, positions, records = self.validate(raws, limit=False)
        if records:
            outcomes, accepted = self._write_direct(records, True)
            self._fill(results, positions, records, outcomes)
            if accepted and self.stream is not None:
                self._announce_sync(accepted)
        return BatchResult([r for r in results if r is not None])

    # ------------------------------------------------------------------ applied notes
    async def _announce(self, accepted: list[EventRecord]) -> None:
        """After a direct COMMIT on the stream tier: the same applied notes a stream consumer
        announces (the events as stored, the profiles they changed), so every other gateway
        replays them into its listeners. A lost note is logged: the store has the events."""
        if self.stream is None:
            return
        if time.monotonic() < self._notes_down_until:
            log.warning("applied note of %d direct write(s) lost: stream down", len(accepted))
            return
        for n in range(0, len(accepted), NOTE_EVENTS):
            chunk = accepted[n : n + NOTE_EVENTS]
            try:
                await self.stream.announce(Applied(self.origin, chunk, changed_profiles(chunk)))
            except StreamUnavailable as exc:
                self._notes_down_until = time.monotonic() + NOTES_RETRY_S
                log.warning("applied note of %d direct write(s) lost: %s", len(accepted) - n, exc)
                return

    def _announce_sync(self, accepted: list[EventRecord]) -> None:
        """:meth:`_announce` for callers without an event loop (imports): on a loop of this
        service's own, in its own thread, which then owns the stream's connection (so a sync
        caller must not share the stream with another loop). Returns after the broker's acks."""
        if self._notes_loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="tailor-applied-notes", daemon=True
            )
            thread.start()
            self._notes_loop = (loop, thread)
        asyncio.run_coroutine_threadsafe(self._announce(accepted), self._notes_loop[0]).result()

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _fill(
        results: list[EventResult | None],
        positions: list[int],
        records: list[EventRecord],
        outcomes: list[str],
    ) -> None:
        for i, ev, outcome in zip(positions, records, outcomes, strict=True):
            if outcome == "refused":
                results[i] = EventResult(
                    i, "rejected", ev.message_id, "anonymousId", IDENTITY_TAKEN
                )
            elif outcome == "conflict":
                results[i] = EventResult(
                    i,
                    "conflict",
                    ev.message_id,
                    "messageId",
                    "this messageId was already stored with a different payload",
                )
            else:
                results[i] = EventResult(i, outcome, ev.message_id, None, None, ev.flags & 1 == 1)  # type: ignore[arg-type]

    def _write_direct(
        self, events: list[EventRecord], follow_links: bool = False
    ) -> tuple[list[str], list[EventRecord]]:
        with self._lock:
            return self._write_group(events, [True] * len(events) if follow_links else None)

    def _run(self) -> None:
        wait = self.config.group_commit_ms / 1000.0
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            jobs = [job]
            deadline = time.monotonic() + wait
            # Gather what else is waiting (up to a short window) into the same transaction.
            while True:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                if sum(len(j.events) for j in jobs) >= 5000:
                    break
            events = job.events if len(jobs) == 1 else [ev for j in jobs for ev in j.events]
            # Per event only when some job follows links (imports); requests never do.
            follow = (
                [j.follow_links for j in jobs for _ in j.events]
                if any(j.follow_links for j in jobs)
                else None
            )
            try:
                with self._lock:
                    outcomes, _ = self._write_group(events, follow)
            except Exception as exc:
                log.exception("event write failed; %d events not acknowledged", len(events))
                for j in jobs:
                    j.future.set_exception(IngestUnavailable(f"events could not be stored: {exc}"))
                continue
            pos = 0
            for j in jobs:
                j.future.set_result(outcomes[pos : pos + len(j.events)])
                pos += len(j.events)

    def _write_group(
        self, events: list[EventRecord], follow_links: list[bool] | None = None
    ) -> tuple[list[str], list[EventRecord]]:
        """One transaction: resolve identities, insert, link, update profiles; then notify.
        Returns the outcome per event and the accepted events as stored (re-keyed).

        ``follow_links[i]``: event i, when it carries only an anonymous id, goes to the user
        that id is linked to (imports); otherwise (and for every event when ``follow_links`` is
        None) it stays on ``anon:<id>``."""
        links: dict[str, str] = {}
        keyed = events  # copied only when an event is re-keyed
        for n, ev in enumerate(events):
            if ev.type == "identify" and ev.anonymous_id and ev.user_id:
                # Only a link the store will accept (it never moves a link to another user).
                owner = links.get(ev.anonymous_id) or self.store.resolve_identity(ev.anonymous_id)
                if owner in (None, ev.user_id):
                    links[ev.anonymous_id] = ev.user_id
            if (
                follow_links is not None
                and follow_links[n]
                and ev.user_id is None
                and ev.anonymous_id is not None
            ):
                user = links.get(ev.anonymous_id) or self.store.resolve_identity(ev.anonymous_id)
                if user is not None and user != ev.profile_key:
                    if keyed is events:
                        keyed = list(events)
                    keyed[n] = dataclasses.replace(ev, profile_key=user)

        accepted_events: list[EventRecord] = []

        def update(accepted: list[EventRecord]) -> dict[str, JSON]:
            accepted_events.extend(accepted)
            return self._profile_updates(accepted)

        try:
            outcomes = self.store.insert_events(keyed, update)
        except BaseException:
            self._remember_states(False)
            raise
        changed = self._remember_states(True)
        self._notify(accepted_events, changed)
        return list(outcomes), accepted_events

    def _notify(self, accepted: list[EventRecord], changed: dict[str, ProfileState | None]) -> None:
        for profile_listener in self._profile_listeners:
            try:
                profile_listener(changed)
            except Exception:  # a listener must never fail an acknowledged write
                log.exception("profile listener %r failed", profile_listener)
        if accepted:
            for listener in self._listeners:
                try:
                    listener(accepted)
                except Exception:  # a listener must never fail an acknowledged write
                    log.exception("event listener %r failed", listener)

    def _profile_updates(self, accepted: list[EventRecord]) -> dict[str, JSON]:
        """Apply accepted events to their profiles (inside the write transaction).

        Profile states are cached in memory between groups, validated against the version the
        store holds (one indexed query per group), so a hot profile is not re-parsed for every
        batch, and a profile changed by another process (e.g. a CLI import) is re-read.
        """
        keys = {ev.profile_key for ev in accepted}
        identifies = [ev for ev in accepted if ev.type == "identify"]
        keys |= {anonymous_key(ev.anonymous_id) for ev in identifies if ev.anonymous_id}
        keys |= {ev.user_id for ev in identifies if ev.user_id}
        versions = self.store.get_profile_versions(sorted(keys))
        states: dict[str, ProfileState] = {}
        misses = []
        for key in keys:
            cached = self._state_cache.get(key)
            if cached is not None and cached[0] == versions.get(key):
                states[key] = cached[1]
            elif key in versions:
                misses.append(key)
            else:
                states[key] = ProfileState()
        for key, doc in self.store.get_profile_states(misses).items():
            states[key] = ProfileState.from_json(doc)
        self._touched = set(keys)
        if self.prefetch_items is not None:
            # One catalog query for the group's unseen items instead of one per item.
            self.prefetch_items([ev.item_id for ev in accepted if ev.item_id])
        # Each profile's events are applied together, in order; an identify first applies
        # what came before it, then merges (the same state as applying one event at a time).
        config, categories = self.profile_config, self.categories
        by_key: dict[str, list[EventRecord]] = {}
        for ev in accepted:
            if ev.type == "identify" and ev.anonymous_id and ev.user_id:
                for key, run in by_key.items():
                    states.setdefault(key, ProfileState()).apply_many(run, config, categories)
                by_key.clear()
                # The anonymous history joins the user's profile (the store re-keys the events).
                anon = states.pop(anonymous_key(ev.anonymous_id), None) or ProfileState()
                states.setdefault(ev.user_id, ProfileState()).merge(anon, config)
                continue
            evs = by_key.get(ev.profile_key)
            if evs is None:
                by_key[ev.profile_key] = [ev]
            else:
                evs.append(ev)
        # setdefault: anonymous-only events after the identify that merged their profile
        # start a fresh one (the store keeps them on it: storage.sqlite.identity_joins).
        for key, run in by_key.items():
            states.setdefault(key, ProfileState()).apply_many(run, config, categories)
        self._pending = states
        return {k: v.to_json() for k, v in states.items()}

    def _remember_states(self, ok: bool) -> dict[str, ProfileState | None]:
        """After the transaction: cache what was committed, or forget what a rollback undid.

        Returns the committed states (empty after a rollback)."""
        if ok:
            version = self.store.last_profile_version
            for key in self._touched:
                state = self._pending.get(key)
                if state is None:
                    self._state_cache.pop(key, None)
                else:
                    self._state_cache[key] = (version, state)
        else:
            for key in self._touched:
                self._state_cache.pop(key, None)
        committed: dict[str, ProfileState | None] = {}
        if ok:
            committed = {key: self._pending.get(key) for key in self._touched}
        self._touched, self._pending = set(), {}
        return committed

    # ------------------------------------------------------------------ rebuild
    def rebuild_profiles(self, progress: Callable[[int], None] | None = None) -> int:
        """Recompute every profile from the event log (timestamp order); returns profiles written."""
        states: dict[str, ProfileState] = {}
        for ev in self.store.iter_events():
            if progress:
                progress(1)
            if ev.type == "identify":
                continue
            st = states.setdefault(ev.profile_key, ProfileState())
            st.apply(ev, self.profile_config, self.categories)
        with self._lock:
            self.store.replace_profile_states({k: v.to_json() for k, v in states.items()})
            self._state_cache.clear()
        return len(states)

    def forget(self, keys: Sequence[str], erase: Callable[[], T]) -> T:
        """Run ``erase`` (the durable deletion of these profiles) while no write group runs,
        then drop their in-memory states, so no later write re-creates what was erased."""
        with self._lock:
            result = erase()
            for key in keys:
                self._state_cache.pop(key, None)
        return result

    def profile(self, profile_key: str) -> ProfileState | None:
        doc = self.store.get_profile_state(profile_key)
        return None if doc is None else ProfileState.from_json(doc)

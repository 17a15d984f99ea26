"""The event stream: a durable, ordered log of accepted events between the gateways that accept
them and the consumers that apply them to profiles (the fleet shape; docs/FLEET.md).

:class:`EventStream` is the one interface; :class:`storage.nats_stream.NatsEventStream` (NATS
JetStream, file storage) is the real backend and :class:`MemoryEventStream` the small double for
tests of the code around it. A Kafka topic plugs in by the same five calls (docs/FLEET.md).

Delivery is at least once: a consumer acknowledges a delivery only after the store committed its
events, so a crash between the two redelivers them, and the store's ``messageId`` dedup makes the
profiles effectively-once.

Besides the events, the stream carries *applied* notes: after a consumer committed a delivery it
announces the events the store accepted (duplicates left out) and the profiles they changed.
Every gateway tails these notes with its own non-durable reader, from now on, and feeds them to
the same listeners (trending, segments, caches) its own ingestion feeds, so every instance keeps
the same derived state. What a process writes to the store directly, not through the stream (the
identify mutation, ``tailor import``), is announced the same way after its COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from storage.types import EventRecord, StorageError

# One stream message stays well under the broker's message size (NATS: 1 MB by default); a larger
# batch is split into several messages, all acknowledged before the client is.
MAX_MESSAGE_BYTES = 256 * 1024
FORMAT = 1


class StreamUnavailable(StorageError):
    """The stream did not acknowledge a publish (or cannot be reached); nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream message handed to a consumer: its events, how many times it was delivered
    (1 the first time; more after a consumer died before acknowledging it) and the backend's
    handle for :meth:`EventStream.ack`."""

    events: list[EventRecord]
    attempt: int
    handle: Any = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one consumer committed: the events the store accepted and the profile keys whose
    state changed. ``origin`` names the process that applied them (a gateway skips its own)."""

    origin: str
    events: list[EventRecord]
    profile_keys: list[str]


@dataclass(frozen=True, slots=True)
class StreamLag:
    """The consumer group's backlog: ``pending`` messages not yet delivered, ``in_flight``
    delivered but not acknowledged, ``last_sequence`` the stream's newest message."""

    stream: str
    consumer: str
    pending: int
    in_flight: int
    last_sequence: int

    @property
    def total(self) -> int:
        return self.pending + self.in_flight

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "lag": self.total}


class EventStream(Protocol):
    """A durable event log with one consumer group and a broadcast of applied notes.

    All calls are coroutines on the caller's event loop; a backend connects on first use.
    """

    async def publish(self, events: Sequence[EventRecord]) -> None:
        """Append ``events`` durably; return only once the stream acknowledged every message
        (NATS: the server's PubAck after the file write). Raises :class:`StreamUnavailable`."""

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        """Up to ``max_messages`` deliveries for the shared consumer group (every consumer
        process of the fleet shares it: each message goes to one of them); ``[]`` when none
        arrived within ``timeout_s`` seconds. Unacknowledged deliveries come back later."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries whose events the store committed (never before)."""

    async def lag(self) -> StreamLag:
        """The consumer group's backlog (what is not applied yet)."""

    async def announce(self, applied: Applied) -> None:
        """Broadcast what a consumer committed to every gateway's :meth:`tail`."""

    async def tail(self) -> AsyncIterator[Applied]:
        """Start reading applied notes now (this reader's own, non-durable position): the
        returned iterator yields every note announced after this call returned."""

    async def close(self) -> None:
        """Stop readers and close the connection."""


def process_origin(role: str) -> str:
    """A name for this process in applied notes (unique per process start)."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


# ---------------------------------------------------------------------- wire format
def _default(obj: Any) -> Any:
    """orjson's fallback: a non-dict ``Mapping`` (an event's properties) as a dict."""
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _record_bytes(ev: EventRecord) -> bytes:
    # orjson serializes the (slotted) dataclass natively, fields in declaration order: the same
    # document as a dict of the fields, ~6x cheaper than ``dataclasses.asdict`` (a deep copy).
    return orjson.dumps(ev, default=_default)


def _chunks(events: Sequence[EventRecord]) -> list[list[bytes]]:
    """Each event serialized once, grouped into chunks of at most :data:`MAX_MESSAGE_BYTES`
    (an event larger than that gets a chunk of its own), in order."""
    out: list[list[bytes]] = []
    chunk: list[bytes] = []
    size = 0
    for ev in events:
        one = _record_bytes(ev)
        if chunk and size + len(one) > MAX_MESSAGE_BYTES:
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(one)
        size += len(one) + 1
    if chunk:
        out.append(chunk)
    return out


def encode_events(events: Sequence[EventRecord]) -> list[bytes]:
    """The events as stream messages of at most :data:`MAX_MESSAGE_BYTES` each (an event larger
    than that gets a message of its own), in order."""
    return [b'{"v":%d,"events":[' % FORMAT + b",".join(c) + b"]}" for c in _chunks(events)]


def decode_events(data: bytes) -> list[EventRecord]:
    doc = orjson.loads(data)
    if doc.get("v") != FORMAT:
        raise StorageError(f"event stream message of format {doc.get('v')!r}; expected {FORMAT}")
    return [EventRecord(**ev) for ev in doc["events"]]


def encode_applied(applied: Applied) -> list[bytes]:
    """The note as messages of bounded size: the events split like :func:`encode_events`; the
    first message carries every changed profile key (a reader updates profiles first, then
    counts the events, as the writer's listeners do)."""
    head = b'{"v":%d,"origin":' % FORMAT + orjson.dumps(applied.origin) + b',"events":['
    keys = orjson.dumps(applied.profile_keys)
    return [
        head + b",".join(chunk) + b'],"profiles":' + (keys if n == 0 else b"[]") + b"}"
        for n, chunk in enumerate(_chunks(applied.events) or [[]])
    ]


def decode_applied(data: bytes) -> Applied:
    doc = orjson.loads(data)
    if doc.get("v") != FORMAT:
        raise StorageError(f"applied note of format {doc.get('v')!r}; expected {FORMAT}")
    return Applied(
        origin=str(doc["origin"]),
        events=[EventRecord(**ev) for ev in doc["events"]],
        profile_keys=[str(k) for k in doc["profiles"]],
    )


# ---------------------------------------------------------------------- in-process double
class MemoryEventStream:
    """An in-process :class:`EventStream` for tests: messages go through the same wire format,
    unacknowledged deliveries are redelivered after ``ack_wait_s``. Not durable."""

    def __init__(self, *, name: str = "memory", ack_wait_s: float = 30.0) -> None:
        self.name = name
        self.ack_wait_s = ack_wait_s
        self._log: list[bytes] = []
        self._next = 0  # the next sequence (index into _log) never delivered
        self._in_flight: dict[int, tuple[float, int]] = {}  # seq -> (deadline, attempt)
        self._acked: set[int] = set()
        self._arrived = asyncio.Event()
        self._tails: list[asyncio.Queue[bytes]] = []

    async def publish(self, events: Sequence[EventRecord]) -> None:
        self._log.extend(encode_events(events))
        self._arrived.set()

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            out: list[Delivery] = []
            now = loop.time()
            for seq, (due, attempt) in sorted(self._in_flight.items()):
                if len(out) < max_messages and due <= now:
                    self._in_flight[seq] = (now + self.ack_wait_s, attempt + 1)
                    out.append(Delivery(decode_events(self._log[seq]), attempt + 1, seq))
            while len(out) < max_messages and self._next < len(self._log):
                seq, self._next = self._next, self._next + 1
                self._in_flight[seq] = (now + self.ack_wait_s, 1)
                out.append(Delivery(decode_events(self._log[seq]), 1, seq))
            if out or now >= deadline:
                return out
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(deadline - now, 0.05))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        for d in deliveries:
            if self._in_flight.pop(d.handle, None) is not None:
                self._acked.add(d.handle)

    async def lag(self) -> StreamLag:
        return StreamLag(
            self.name, "memory", len(self._log) - self._next, len(self._in_flight), len(self._log)
        )

    async def announce(self, applied: Applied) -> None:
        for data in encode_applied(applied):
            for q in self._tails:
                q.put_nowait(data)

    async def tail(self) -> AsyncIterator[Applied]:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        self._tails.append(q)

        async def notes() -> AsyncIterator[Applied]:
            try:
                while True:
                    yield decode_applied(await q.get())
            finally:
                self._tails.remove(q)

        return notes()

    async def close(self) -> None:
        return None

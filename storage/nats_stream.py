"""The event stream on NATS JetStream (``event_stream_url=nats://host:4222``).

Why JetStream: a publish is acknowledged by the server's PubAck only after the message is in the
stream's file storage, so "acknowledged to the client" can mean "durable". (This machine's Redis
runs without persistence, so Redis Streams would acknowledge events a restart loses.)

Layout: one stream ``<name>`` (file storage, limits retention, ``max_age``) with two subjects:
``<subject>.in`` carries accepted events to the durable pull consumer ``<consumer>`` that every
consumer process shares (explicit ack, ``ack_wait``); ``<subject>.applied`` carries the applied
notes each gateway tails with its own ordered, ephemeral consumer that starts at the newest
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from storage.stream import (
    Applied,
    Delivery,
    StreamLag,
    StreamUnavailable,
    decode_applied,
    decode_events,
    encode_applied,
    encode_events,
)
from storage.types import EventRecord

log = logging.getLogger("tailor.stream")


class NatsEventStream:
    """:class:`storage.stream.EventStream` over NATS JetStream (nats-py)."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = "TAILOR_EVENTS",
        subject: str = "tailor.events",
        consumer: str = "tailor-workers",
        ack_wait_s: float = 30.0,
        max_age_s: float = 7 * 86400.0,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject_in = f"{subject}.in"
        self.subject_applied = f"{subject}.applied"
        self.consumer = consumer
        self.ack_wait_s = ack_wait_s
        self.max_age_s = max_age_s
        self.publish_timeout_s = publish_timeout_s
        self._nc: Any = None
        self._js: Any = None
        self._pull: Any = None
        self._lock = asyncio.Lock()
        self._closing = False  # our own close: its disconnect is no news

    # ------------------------------------------------------------------ connection
    async def _context(self) -> Any:
        if self._js is not None and self._nc is not None and self._nc.is_connected:
            return self._js
        async with self._lock:
            if self._js is None or self._nc is None or self._nc.is_closed:
                try:
                    self._nc = await nats.connect(
                        self.url,
                        connect_timeout=2,
                        # Bounded: a closed connection is reopened by the next call here.
                        max_reconnect_attempts=5,
                        reconnect_time_wait=0.5,
                        name=f"tailor:{self.stream}",
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnect,
                        reconnected_cb=self._on_reconnect,
                    )
                    js = self._nc.jetstream(timeout=self.publish_timeout_s)
                    await self._ensure_stream(js)
                except (NatsError, OSError, TimeoutError) as exc:
                    await self._drop()
                    raise StreamUnavailable(
                        f"event stream {self.url} ({self.stream}) unreachable: {exc!r}"
                    ) from exc
                self._js = js
            return self._js

    async def _ensure_stream(self, js: Any) -> None:
        config = StreamConfig(
            name=self.stream,
            subjects=[self.subject_in, self.subject_applied],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age_s,
        )
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(config)

    async def _on_error(self, exc: Exception) -> None:
        # The callers see failures as StreamUnavailable; the client's own errors are detail.
        log.debug("NATS client error: %r", exc)

    async def _on_disconnect(self) -> None:
        if not self._closing:
            log.warning("event stream %s disconnected", self.url)

    async def _on_reconnect(self) -> None:
        log.info("event stream %s reconnected", self.url)

    @property
    def connected(self) -> bool:
        return self._nc is not None and bool(self._nc.is_connected)

    async def _drop(self) -> None:
        nc, self._nc, self._js, self._pull = self._nc, None, None, None
        if nc is not None:
            try:
                self._closing = True
                await nc.close()
            except Exception:  # closing a half-open connection must not mask the real error
                log.debug("closing the NATS connection failed", exc_info=True)
            finally:
                self._closing = False

    async def close(self) -> None:
        await self._drop()

    async def delete(self) -> None:
        """Delete the stream and its consumers (tests, and an operator's reset)."""
        js = await self._context()
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(self.stream)

    # ------------------------------------------------------------------ producing
    async def publish(self, events: Sequence[EventRecord]) -> None:
        js = await self._context()
        try:
            # Every message of the batch in flight at once; the caller waits for every PubAck.
            await asyncio.gather(
                *(
                    js.publish(self.subject_in, data, timeout=self.publish_timeout_s)
                    for data in encode_events(events)
                )
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise StreamUnavailable(f"the event stream did not acknowledge: {exc!r}") from exc

    async def announce(self, applied: Applied) -> None:
        js = await self._context()
        try:
            # The note's messages in flight at once (a reader orders them by stream sequence).
            await asyncio.gather(
                *(
                    js.publish(self.subject_applied, data, timeout=self.publish_timeout_s)
                    for data in encode_applied(applied)
                )
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise StreamUnavailable(f"applied note not published: {exc!r}") from exc

    # ------------------------------------------------------------------ consuming
    async def _subscription(self) -> Any:
        if self._pull is None:
            js = await self._context()
            self._pull = await js.pull_subscribe(
                self.subject_in,
                durable=self.consumer,
                stream=self.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait_s,
                    max_ack_pending=10_000,
                    deliver_policy=DeliverPolicy.ALL,
                ),
            )
        return self._pull

    async def fetch(self, max_messages: int, timeout_s: float) -> list[Delivery]:
        sub = await self._subscription()
        try:
            # One pull request: nats-py (>= 2.16) first asks the server for what is ready
            # (no_wait) and returns it at once; only when nothing is ready does it wait, up to
            # ``timeout_s``, for the first message. (A second "what else is ready" request after
            # the first message used to idle ~20-40 ms per fetch when nothing else was.)
            msgs = await sub.fetch(batch=max_messages, timeout=timeout_s)
        except (NatsTimeout, TimeoutError):  # nothing arrived in time
            return []
        except (NatsError, OSError) as exc:
            raise StreamUnavailable(f"fetching from the event stream failed: {exc!r}") from exc
        return [Delivery(decode_events(m.data), int(m.metadata.num_delivered), m) for m in msgs]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        # Confirmed acks (the server answers each): once this returns the deliveries are done,
        # and the lag says so. A lost ack only means a redelivery the store dedups.
        try:
            await asyncio.gather(
                *(d.handle.ack_sync(timeout=self.publish_timeout_s) for d in deliveries)
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise StreamUnavailable(f"acknowledging deliveries failed: {exc!r}") from exc

    async def lag(self) -> StreamLag:
        js = await self._context()
        try:
            info = await js.consumer_info(self.stream, self.consumer)
            pending, in_flight = int(info.num_pending), int(info.num_ack_pending)
        except NotFoundError:
            # No consumer yet: everything published to the events subject is pending.
            state = await js.stream_info(self.stream, subjects_filter=self.subject_in)
            pending = int((state.state.subjects or {}).get(self.subject_in, 0))
            in_flight = 0
        stream = await js.stream_info(self.stream)
        return StreamLag(self.stream, self.consumer, pending, in_flight, int(stream.state.last_seq))

    async def tail(self) -> AsyncIterator[Applied]:
        js = await self._context()
        try:
            sub = await js.subscribe(
                self.subject_applied,
                stream=self.stream,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise StreamUnavailable(f"cannot tail the applied notes: {exc!r}") from exc

        async def notes() -> AsyncIterator[Applied]:
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=5.0)
                    except NatsTimeout:
                        continue
                    yield decode_applied(msg.data)
            finally:
                with contextlib.suppress(NatsError, OSError):
                    await sub.unsubscribe()

        return notes()

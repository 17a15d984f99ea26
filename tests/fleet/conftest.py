"""Fleet fixtures: a NATS JetStream stream of this test's own (127.0.0.1:4222), deleted after."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from storage.nats_stream import NatsEventStream

NATS_URL = "nats://127.0.0.1:4222"


@dataclass(frozen=True)
class StreamNames:
    """Unique names of one test's stream: pass them as settings, delete the stream after."""

    stream: str
    subject: str
    consumer: str

    def settings(self, ack_wait_s: float = 30.0) -> dict[str, object]:
        return {
            "event_stream_url": NATS_URL,
            "event_stream_name": self.stream,
            "event_stream_subject": self.subject,
            "event_stream_consumer": self.consumer,
            "event_stream_ack_wait_s": ack_wait_s,
        }

    def env(self, ack_wait_s: float = 30.0) -> dict[str, str]:
        return {f"TAILOR_{k.upper()}": str(v) for k, v in self.settings(ack_wait_s).items()}

    def open(self, ack_wait_s: float = 30.0) -> NatsEventStream:
        return NatsEventStream(
            NATS_URL,
            stream=self.stream,
            subject=self.subject,
            consumer=self.consumer,
            ack_wait_s=ack_wait_s,
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_stream_names() -> StreamNames:
    tag = secrets.token_hex(4)
    return StreamNames(f"TEST_{tag}", f"test.{tag}", f"workers-{tag}")


async def delete_stream(names: StreamNames) -> None:
    stream = names.open()
    try:
        await stream.delete()
    finally:
        await stream.close()


@pytest.fixture
async def stream_names() -> AsyncIterator[StreamNames]:
    names = new_stream_names()
    yield names
    await delete_stream(names)

"""Crash safety on the event stream, with real processes: SIGKILL the worker (and, separately,
the gateway running the consumer) while a client streams acknowledged events; after a restart
every acknowledged event is in the store exactly once and every profile counts it once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fleet.conftest import StreamNames, free_port
from tests.fleet.processes import (
    profile_counts_match_the_log,
    serve,
    stop,
    stored_events,
    stream_events,
    tailor,
)

ACK_WAIT_S = 2.0


async def _drained(names: StreamNames, db: Path, acked: set[str], timeout_s: float = 90) -> None:
    """Wait until the consumer group has nothing pending and the store holds every acked event."""
    stream = names.open()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            lag = await stream.lag()
            if lag.total == 0 and acked <= set(stored_events(db)):
                return
            assert asyncio.get_running_loop().time() < deadline, f"not drained: {lag}"
            await asyncio.sleep(0.2)
    finally:
        await stream.close()


def _check(db: Path, acked: set[str]) -> None:
    stored = stored_events(db)
    assert acked, "nothing was acknowledged"
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged events missing"
    assert set(stored.values()) == {1}, "an event was stored twice"
    assert profile_counts_match_the_log(db) == {}, (
        "a profile applied an event twice (or missed one)"
    )


async def _stream_until_killed(
    port: int, victim: subprocess.Popen[bytes], acked: set[str], kill_at: int, stop_at: int
) -> None:
    """Stream events; SIGKILL ``victim`` once ``kill_at`` are acknowledged; stop the client at
    ``stop_at`` acknowledged events (or when the gateway stops answering)."""
    until = asyncio.Event()

    async def killer() -> None:
        while len(acked) < kill_at and not until.is_set():
            await asyncio.sleep(0.01)
        victim.send_signal(signal.SIGKILL)
        while len(acked) < stop_at and not until.is_set():
            await asyncio.sleep(0.01)
        until.set()

    async def client() -> None:
        await stream_events(port, acked, prefix="w", until=until)
        until.set()

    await asyncio.gather(killer(), client())


@pytest.mark.slow
async def test_sigkill_of_a_worker_loses_and_repeats_nothing(
    tmp_path: Path, stream_names: StreamNames
) -> None:
    data = tmp_path / "var"
    env = {**stream_names.env(ACK_WAIT_S), "TAILOR_EVENT_STREAM_INLINE_CONSUMER": "false"}
    port = free_port()
    gateway = serve(data, port, env, tmp_path / "gateway.log")
    worker = tailor(["worker"], {"TAILOR_DATA_DIR": str(data), **env}, tmp_path / "worker.log")
    acked: set[str] = set()
    try:
        # The worker dies mid-stream; the gateway keeps acknowledging into the stream meanwhile.
        await _stream_until_killed(port, worker, acked, kill_at=2000, stop_at=3000)
        worker.wait()
        assert len(acked) >= 3000
        worker = tailor(["worker"], {"TAILOR_DATA_DIR": str(data), **env}, tmp_path / "worker.log")
        await _drained(stream_names, data / "tailor.db", acked)
        # A graceful stop (SIGTERM) finishes the batch in hand and exits cleanly.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        for proc in (worker, gateway):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    _check(data / "tailor.db", acked)


@pytest.mark.slow
async def test_sigkill_of_a_gateway_running_the_consumer_loses_and_repeats_nothing(
    tmp_path: Path, stream_names: StreamNames
) -> None:
    data = tmp_path / "var"
    env = stream_names.env(ACK_WAIT_S)
    port = free_port()
    gateway = serve(data, port, env, tmp_path / "gateway.log")
    acked: set[str] = set()
    try:
        await _stream_until_killed(port, gateway, acked, kill_at=2000, stop_at=2000)
        gateway.wait()
        assert len(acked) >= 2000
        # Restarted on the same data dir and stream: it applies what the dead one left.
        gateway = serve(data, free_port(), env, tmp_path / "gateway.log")
        await _drained(stream_names, data / "tailor.db", acked)
    finally:
        stop(gateway)
    _check(data / "tailor.db", acked)

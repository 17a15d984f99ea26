"""`storage.threads.in_thread`: to_thread whose cancelled caller waits for the thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from storage.threads import in_thread


async def test_returns_the_result_and_raises_the_error() -> None:
    assert await in_thread(lambda a, b: a + b, 2, 3) == 5

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await in_thread(fail)


async def test_a_cancelled_caller_returns_only_after_the_thread() -> None:
    started, finished = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        time.sleep(0.3)
        finished.set()

    task = asyncio.create_task(in_thread(work))
    while not started.is_set():
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()  # plain to_thread would be cancelled while the thread still ran

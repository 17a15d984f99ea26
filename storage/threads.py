"""Blocking store work from asyncio: `in_thread`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread``, except that a cancelled caller still waits for the thread.

    A thread cannot be stopped: when a background task is cancelled at shutdown, the store it
    reads must not be closed under it (closing a SQLite connection that another thread is
    executing on crashes the process). So the cancellation reaches the caller only once the
    thread's call has returned; whoever closes the store awaits the cancelled tasks first."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the caller was cancelled, its outcome goes unused
        raise

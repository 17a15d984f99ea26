"""``SingleFlight``: concurrent calls for one key share one execution (Go's singleflight).

The shared work runs in its own ``asyncio.Task``; callers await it through ``asyncio.shield``,
so a caller that is cancelled (client went away, timeout) stops waiting without cancelling the
work the other callers still wait for. If every caller goes away, the work still finishes --
its result is simply dropped -- which keeps a half-done fill from being retried in a loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K]):
    """De-duplicates concurrent async work by key. One instance per event loop."""

    def __init__(self) -> None:
        self._flights: dict[K, asyncio.Task[Any]] = {}

    async def do(self, key: K, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` unless a call for ``key`` is already running; return its result.

        Every caller of one flight gets the same result object, or the same exception raised.
        """
        result, _joined = await self.do_shared(key, fn)
        return result

    async def do_shared(self, key: K, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Like ``do``, also telling whether this caller joined someone else's flight."""
        task = self._flights.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.ensure_future(fn())
            self._flights[key] = task
            task.add_done_callback(lambda t: self._landed(key, t))
        return await asyncio.shield(task), joined

    def _landed(self, key: K, task: asyncio.Task[Any]) -> None:
        # (No need to retrieve the exception here: ``shield`` does it for cancelled waiters.)
        if self._flights.get(key) is task:
            del self._flights[key]

    def in_flight(self, key: K) -> bool:
        return key in self._flights

    def __len__(self) -> int:
        return len(self._flights)

    async def aclose(self) -> None:
        """Cancel every flight and wait for them (for a lifespan shutdown)."""
        tasks = list(self._flights.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""``CircuitBreaker``: stop calling an upstream that keeps failing, probe it, close on success.

closed --(``failures`` consecutive failures)--> open --(``reset_s`` elapsed)--> half-open
half-open --(the probe succeeds)--> closed;  half-open --(the probe fails)--> open again.

While open, calls fail fast (no socket, no timeout to wait out), which keeps a dead upstream
from eating every request's deadline. Half-open lets exactly one probe through at a time;
the other callers keep failing fast until the probe has landed. Transitions are logged at
WARNING (opening) and INFO (probing, closing). The clock is injected (monotonic seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from upstream.types import BreakerState

log = logging.getLogger("tailor.upstream")


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        reset_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError("failures must be >= 1")
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.transitions = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose reset time has passed reads half-open."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_s:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """May a call go out now? In half-open, ``True`` for one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        was_probe, self._probing = self._probing, False
        if (self._state is BreakerState.HALF_OPEN and was_probe) or (
            self._state is BreakerState.CLOSED and self._failures >= self.threshold
        ):
            self._open()

    def release(self) -> None:
        """A call that was allowed ended with no verdict (cancelled): free the probe slot."""
        self._probing = False

    def snapshot(self) -> dict[str, Any]:
        """For ``/readyz``: state, consecutive failures, seconds until the next probe."""
        state = self.state
        out: dict[str, Any] = {"state": state.value, "failures": self._failures}
        if state is BreakerState.OPEN:
            out["retry_in_s"] = round(max(0.0, self.reset_s - (self._clock() - self._opened_at)), 3)
        return out

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        self.transitions += 1
        if new is BreakerState.OPEN:
            log.warning(
                "upstream %s: circuit %s -> open after %d consecutive failures "
                "(next probe in %.1fs)",
                self.name,
                old.value,
                self._failures,
                self.reset_s,
            )
        else:
            log.info("upstream %s: circuit %s -> %s", self.name, old.value, new.value)

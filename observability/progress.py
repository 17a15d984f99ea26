"""Progress of long work as log lines: what a command prints when its output is not a terminal.

``LogProgress`` is advanced with ``advance(n)``; at most every ``interval_s`` it logs one line
(``label: done/total (pct) rate/s, ETA``) and ``finish()`` logs the summary line (count, time,
rate). The terminal bar (rich) lives with the CLI; both end with the same summary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("tailor.progress")


def _rate(n: float, seconds: float) -> str:
    per_s = n / seconds if seconds > 0 else 0.0
    return f"{per_s:,.0f}/s" if per_s >= 10 else f"{per_s:,.2f}/s"


def _eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def summary(label: str, done: int, elapsed: float) -> str:
    """The line every long step ends with: ``label: done N in Xs (R/s)``."""
    return f"{label}: done {done:,} in {elapsed:.1f}s ({_rate(done, elapsed)})"


class LogProgress:
    """Periodic one-line progress in the logs (see the module docstring).

    A daemon thread writes the line every ``interval_s`` whether or not ``advance`` was called,
    so steps that cannot count their work (training) still show they are alive."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.interval_s = interval_s
        self.clock = clock
        self.done = 0
        self.started = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tailor-progress", daemon=True)
        self._thread.start()

    def advance(self, n: int = 1) -> None:
        self.done += n

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            log.info("%s", self.line(self.clock()))

    def line(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            pct = 100.0 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            eta = f"ETA {_eta(left)}" if rate > 0 else "ETA -"
            return (
                f"{self.label}: {self.done:,}/{self.total:,} ({pct:.0f}%) "
                f"{_rate(self.done, elapsed)}, {eta}"
            )
        if self.done:
            return f"{self.label}: {self.done:,} {_rate(self.done, elapsed)}, {_eta(elapsed)}"
        return f"{self.label}: running for {_eta(elapsed)}"

    def finish(self) -> str:
        """Stop the periodic lines; log and return the summary line."""
        self._stop.set()
        self._thread.join()
        elapsed = self.clock() - self.started
        text = (
            summary(self.label, self.done, elapsed)
            if self.done
            else f"{self.label}: done in {elapsed:.1f}s"
        )
        log.info("%s", text)
        return text

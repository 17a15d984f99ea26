"""What every ``tailor`` command shares: settings from arguments, the console, progress bars,
and the domain services opened for one command."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from gateway.settings import Settings, load_settings
from gateway.wiring import build_services
from observability.progress import LogProgress, summary
from resolvers.context import Services

console = Console(stderr=True)


class Common(Protocol):
    """Adds the shared options (``--data-dir``; ``--host``/``--port`` for servers)."""

    def __call__(self, p: argparse.ArgumentParser, server: bool = False) -> None: ...


def common_options(p: argparse.ArgumentParser, server: bool = False) -> None:
    p.add_argument("--data-dir", type=Path, help="where the data lives (default ./var)")
    if server:
        p.add_argument("--host", help="bind address (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 8000)")


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        k: getattr(args, k, None)
        for k in ("data_dir", "host", "port")
        if getattr(args, k, None) is not None
    }
    return load_settings(getattr(args, "config", None), **overrides)


class RateColumn(ProgressColumn):
    """Units per second (rich's speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")


# Seconds between progress lines when output is not a terminal (the CLI sets it from the
# ``progress_interval_s`` setting).
progress_interval_s = 10.0


@contextlib.contextmanager
def progress_bar(label: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Progress of one long step: on a terminal a bar with count, rate and ETA; otherwise a
    log line every ``progress_interval_s``. Both end with a summary line (count, time, rate)."""
    if not console.is_terminal:
        lines = LogProgress(label, total, interval_s=progress_interval_s)
        try:
            yield lines.advance
        finally:
            lines.finish()
        return
    started = time.monotonic()
    done = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int) -> None:
            nonlocal done
            done += n
            bar.advance(task, n)

        yield advance
    elapsed = time.monotonic() - started
    console.print(summary(label, done, elapsed) if done else f"{label}: done in {elapsed:.1f}s")


@contextlib.contextmanager
def open_services(settings: Settings, role: str = "cli") -> Iterator[Services]:
    """The domain services over the data dir, for one command; the store is closed after
    (and the event stream, if the command announced on it)."""
    services = build_services(settings, role=role)
    try:
        yield services
    finally:
        services.ingest.stop()
        services.store.close()


def count_lines(path: Path) -> int | None:
    if path.suffix.lower() in (".parquet", ".pq"):
        return None
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=str)

"""Incremental pull of items or users from an upstream into the local store (``tailor sync``).

The cursor lives in the store's ``meta`` table under ``upstream_sync:<kind>`` as JSON::

    {"since": T | null,     # the listing's updated_since of this run (epoch seconds)
     "cursor": C | null,    # the next page of this run; null between runs
     "max_seen": T | null}  # the newest updated_at written so far in this run

It is saved after every page is written, so a crashed sync resumes at the next page instead of
starting over. A finished run moves ``since`` to ``max_seen`` (inclusive: rows updated in that
same second come again and are upserted again, which is harmless; missing them would not be).
Writes are upserts, so a page written twice (crash between the write and the cursor save)
changes nothing.

Users keep their local consent flags: consent is the user's choice recorded by Tailor
(``setConsent``), and a CRM export must not silently opt someone back in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from storage.threads import in_thread
from storage.types import ItemRecord, UserRecord
from upstream.sources import RecordSource
from upstream.types import UpstreamError

log = logging.getLogger("tailor.upstream")


@dataclass(slots=True)
class SyncCursor:
    since: float | None = None
    cursor: str | None = None
    max_seen: float | None = None

    @classmethod
    def load(cls, store: Any, kind: str) -> SyncCursor:
        raw = store.get_meta(f"upstream_sync:{kind}")
        if not raw:
            return cls()
        doc = orjson.loads(raw)
        return cls(doc.get("since"), doc.get("cursor"), doc.get("max_seen"))

    def save(self, store: Any, kind: str) -> None:
        doc = {"since": self.since, "cursor": self.cursor, "max_seen": self.max_seen}
        store.set_meta(f"upstream_sync:{kind}", orjson.dumps(doc).decode())


@dataclass(slots=True)
class SyncSummary:
    kind: str
    resumed: bool = False
    since: float | None = None
    pages: int = 0
    written: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.rejected

    def summary(self) -> str:
        start = "from the start" if self.since is None else f"updated since {self.since:.0f}"
        line = (
            f"sync {self.kind}: {self.pages} pages, {self.written} written, "
            f"{len(self.rejected)} rejected ({start}{', resumed' if self.resumed else ''}) "
            f"in {self.seconds:.1f}s"
        )
        if self.error:
            line += f"; stopped: {self.error} (run it again to resume from the saved cursor)"
        return line


async def sync_records(
    source: RecordSource[Any],
    store: Any,
    *,
    page_size: int = 500,
    progress: Callable[[int], None] | None = None,
    on_written: Callable[[Sequence[Any]], None] | None = None,
    full: bool = False,
) -> SyncSummary:
    """Pull every page updated since the saved cursor; returns the summary (never raises
    ``UpstreamError``: it ends the run with ``summary.error`` and the cursor kept)."""
    kind = source.kind
    started = time.perf_counter()
    state = SyncCursor() if full else SyncCursor.load(store, kind)
    summary = SyncSummary(kind, resumed=state.cursor is not None, since=state.since)
    while True:
        try:
            page = await source.page(state.since, state.cursor, page_size)
        except UpstreamError as exc:
            summary.error = str(exc)
            log.error("sync %s stopped at cursor %r: %s", kind, state.cursor, exc)
            break
        records = list(page.records)
        if records:
            summary.written += await in_thread(_write, store, kind, records)
            newest = max(r.updated_at for r in records)
            state.max_seen = newest if state.max_seen is None else max(state.max_seen, newest)
            source.invalidate([r.id for r in records])
            if on_written is not None:
                on_written(records)
        for rid, reason in page.rejected:
            log.error("sync %s: rejected %s: %s", kind, rid, reason)
        summary.rejected.extend(page.rejected)
        summary.pages += 1
        if progress is not None:
            progress(len(records) + len(page.rejected))
        state.cursor = page.next_cursor
        if state.cursor is None:
            state.since = state.max_seen if state.max_seen is not None else state.since
            state.max_seen = None
            state.save(store, kind)
            break
        state.save(store, kind)
    summary.seconds = time.perf_counter() - started
    log.info("%s", summary.summary())
    return summary


def _write(store: Any, kind: str, records: list[Any]) -> int:
    if kind == "items":
        items: list[ItemRecord] = records
        return int(store.upsert_items(items))
    users: list[UserRecord] = []
    for u in records:
        local = store.get_user(u.id)
        if local is not None:
            u = UserRecord(
                u.id, u.traits, local.consent_personalization, local.consent_tracking, u.updated_at
            )
        users.append(u)
    return int(store.upsert_users(users))


async def sync_forever(
    sources: Sequence[RecordSource[Any]],
    store: Any,
    interval_s: float,
    *,
    page_size: int = 500,
    on_written: Callable[[str, Sequence[Any]], None] | None = None,
) -> None:
    """``tailor serve``'s background sync: every ``interval_s``, each source in turn."""
    while True:
        for source in sources:
            hook = None if on_written is None else (lambda rs, k=source.kind: on_written(k, rs))
            try:
                await sync_records(source, store, page_size=page_size, on_written=hook)
            except Exception:  # a bug in one run must not end the schedule
                log.exception("sync %s failed", source.kind)
        await asyncio.sleep(interval_s)

"""The upstream services of one process: clients and record sources, built from configs.

``build_upstreams(configs)`` returns ``None`` when no upstream is configured (Tailor then reads
the local store only). Otherwise the app's lifespan owns the result: the request loaders ask
its sources (``Services.item_source`` / ``traits_source``), ``invalidate`` follows
``/admin/purge``, ``start_sync`` runs the background sync, ``snapshot`` feeds ``/readyz``,
``aclose`` closes the shared ``httpx.AsyncClient`` s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from storage.types import ItemRecord, UserRecord
from upstream.client import UpstreamClient
from upstream.sources import RecordSource, catalog_source, crm_source
from upstream.sync import sync_forever
from upstream.types import UpstreamConfig

log = logging.getLogger("tailor.upstream")


class TraitsView:
    """The CRM source as the traits loader wants it: ``fetch(ids)`` -> traits dicts.

    Configured PII traits are hashed before they leave (``hash_traits``), so the live path
    shows exactly what a synced or imported user would.
    """

    def __init__(
        self,
        source: RecordSource[UserRecord],
        hash_traits: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.source = source
        self._hash = hash_traits

    async def fetch(self, ids: Sequence[str]) -> list[dict[str, Any] | BaseException | None]:
        out: list[dict[str, Any] | BaseException | None] = []
        for got in await self.source.fetch(ids):
            if isinstance(got, UserRecord):
                traits = dict(got.traits)
                out.append(self._hash(traits) if self._hash else traits)
            else:
                out.append(got)
        return out


@dataclass
class Upstreams:
    """Everything the app owns for its upstreams."""

    clients: dict[str, UpstreamClient]
    catalog: RecordSource[ItemRecord] | None = None
    crm: RecordSource[UserRecord] | None = None
    sync_task: Any = field(default=None, repr=False)

    def invalidate(self, tags: Sequence[str] | None = None) -> int:
        """Drop cached answers carrying ``tags`` (``item:ID``, ``user:ID``), or all of them."""
        n = 0
        for source in self.sources():
            n += source.invalidate() if tags is None else source.invalidate_tags(tags)
        return n

    def sources(self) -> list[RecordSource[Any]]:
        return [s for s in (self.catalog, self.crm) if s is not None]

    def snapshot(self) -> dict[str, Any]:
        """Per upstream: breaker state, failures, counters (``/readyz`` shows it)."""
        return {name: client.snapshot() for name, client in self.clients.items()}

    def start_sync(
        self,
        store: Any,
        interval_s: float,
        *,
        page_size: int,
        on_written: Callable[[str, Sequence[Any]], None] | None = None,
    ) -> None:
        """Sync every source into ``store`` every ``interval_s`` (a task on the running loop;
        ``aclose`` cancels it). ``on_written(kind, records)`` hears each written page."""
        if interval_s > 0 and self.sources():
            self.sync_task = asyncio.create_task(
                sync_forever(
                    self.sources(), store, interval_s, page_size=page_size, on_written=on_written
                )
            )

    async def aclose(self) -> None:
        if self.sync_task is not None:
            self.sync_task.cancel()
            # A write cancelled mid-way finishes its thread first (in_thread): wait for it, so
            # the store is not closed under it.
            await asyncio.gather(self.sync_task, return_exceptions=True)
        for source in self.sources():
            await source.aclose()
        for client in self.clients.values():
            await client.aclose()


def build_upstreams(
    configs: Mapping[str, UpstreamConfig],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Upstreams | None:
    """Clients and sources for the configured upstreams; None when there are none.

    ``transport``: the httpx seam (tests pass ``httpx.MockTransport``); ``clock``: wall
    seconds for cache ages.
    """
    if not configs:
        return None
    clients = {name: UpstreamClient(cfg, transport=transport) for name, cfg in configs.items()}
    ups = Upstreams(clients)
    if "catalog" in clients:
        ups.catalog = catalog_source(clients["catalog"], clock=clock)
    if "crm" in clients:
        ups.crm = crm_source(clients["crm"], clock=clock)
    for name, cfg in configs.items():
        log.info(
            "upstream %s: %s (timeouts %.1f/%.1f/%.1fs, %d retries, cache %gs + stale %gs)",
            name,
            cfg.base_url,
            cfg.connect_timeout_s,
            cfg.read_timeout_s,
            cfg.total_timeout_s,
            cfg.retries,
            cfg.cache_ttl_s,
            cfg.stale_if_error_s,
        )
    return ups

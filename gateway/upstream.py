"""Wiring of the upstream services: settings -> clients and sources -> the resolvers' hooks.

``build_upstreams(settings)`` returns ``None`` when no upstream URL is set (Tailor then reads
the local store only, as before). Otherwise the app's lifespan owns the result: ``attach``
puts the sources where the request loaders look for them (``services.extras["item_source"]``,
``["traits_source"]``), ``follow_purges`` makes ``/admin/purge`` drop cached upstream answers
too, ``snapshot`` feeds ``/readyz``, ``aclose`` closes the shared ``httpx.AsyncClient`` s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.settings import Settings
from gateway.upstream_client import UpstreamClient
from gateway.upstream_sources import RecordSource, catalog_source, crm_source, parse_field_map
from gateway.upstream_types import UpstreamConfig
from storage.types import ItemRecord, UserRecord

log = logging.getLogger("tailor.upstream")


def upstream_configs(settings: Settings) -> dict[str, UpstreamConfig]:
    """The configured upstreams by name (``catalog``, ``crm``), from the ``upstream_*`` settings."""
    common: dict[str, Any] = dict(
        token=settings.upstream_token,
        connect_timeout_s=settings.upstream_connect_timeout_s,
        read_timeout_s=settings.upstream_read_timeout_s,
        total_timeout_s=settings.upstream_total_timeout_s,
        max_connections=settings.upstream_max_connections,
        max_keepalive=settings.upstream_max_keepalive,
        retries=settings.upstream_retries,
        backoff_base_s=settings.upstream_backoff_s,
        backoff_max_s=settings.upstream_backoff_max_s,
        breaker_failures=settings.upstream_breaker_failures,
        breaker_reset_s=settings.upstream_breaker_reset_s,
        cache_ttl_s=settings.upstream_cache_ttl_s,
        stale_if_error_s=settings.upstream_stale_if_error_s,
        cache_max_bytes=settings.upstream_cache_max_bytes,
        batch_max=settings.upstream_batch_max,
    )
    out: dict[str, UpstreamConfig] = {}
    if settings.upstream_catalog_url:
        out["catalog"] = UpstreamConfig(
            "catalog",
            settings.upstream_catalog_url.rstrip("/"),
            field_map=parse_field_map(settings.upstream_catalog_map),
            **common,
        )
    if settings.upstream_crm_url:
        out["crm"] = UpstreamConfig(
            "crm",
            settings.upstream_crm_url.rstrip("/"),
            field_map=parse_field_map(settings.upstream_crm_map),
            **common,
        )
    return out


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

    def attach(self, services: Any) -> None:
        """Point the request loaders of ``services`` (resolvers.context.Services) at the sources."""
        services.extras["upstreams"] = self
        if self.catalog is not None:
            services.extras["item_source"] = self.catalog
        if self.crm is not None:
            privacy = services.extras.get("privacy")
            services.extras["traits_source"] = TraitsView(
                self.crm, privacy.hash_traits if privacy is not None else None
            )

    def follow_purges(self, edge: Any) -> None:
        """Make the edge layer's purges (``/admin/purge``) drop cached upstream answers too."""
        original = edge.purge

        async def purge(tags: list[str], keys: list[str], everything: bool = False) -> Any:
            self.invalidate(tags=None if everything else tags)
            return await original(tags, keys, everything)

        edge.purge = purge

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

    async def aclose(self) -> None:
        if self.sync_task is not None:
            self.sync_task.cancel()
        for source in self.sources():
            await source.aclose()
        for client in self.clients.values():
            await client.aclose()


def build_upstreams(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Upstreams | None:
    """Clients and sources for the configured upstreams; None when there are none.

    ``transport``: the httpx seam (tests pass ``httpx.MockTransport``); ``clock``: wall
    seconds for cache ages.
    """
    configs = upstream_configs(settings)
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


def start_upstreams(
    settings: Settings,
    services: Any,
    edge: Any,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> Upstreams | None:
    """The lifespan's one call: build, attach to the loaders and purges, start the sync schedule."""
    import asyncio

    from gateway.upstream_sync import sync_forever

    ups = build_upstreams(settings, transport=transport, clock=clock)
    if ups is None:
        return None
    ups.attach(services)
    ups.follow_purges(edge)
    if settings.upstream_sync_interval_s > 0 and ups.sources():

        def written(kind: str, records: Sequence[Any]) -> None:
            if kind == "items":
                services.catalog.update(records)
                edge.items_changed([r.id for r in records])

        ups.sync_task = asyncio.create_task(
            sync_forever(
                ups.sources(),
                services.store,
                settings.upstream_sync_interval_s,
                page_size=settings.upstream_sync_page_size,
                on_written=written,
            )
        )
    return ups

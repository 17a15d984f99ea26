"""Upstream record sources: the catalog (items) and the CRM (users/traits) over REST.

``RecordSource.fetch(ids)`` answers one DataLoader batch: fresh cached answers first, then one
upstream call per ``batch_max`` ids for the rest (identical in-flight calls are shared), then,
for ids whose call failed, cached answers inside the stale-if-error window. What is left is an
:class:`UpstreamError` for that id only -- the resolvers null that one field.

The REST contract (documented in the README), ``kind`` being ``items`` or ``users``::

    GET {base}/{kind}?ids=a,b,c                     -> {"{kind}": [row, ...]}   (unknown ids absent)
    GET {base}/{kind}?updated_since=T&limit=N[&cursor=C]
                                                    -> {"{kind}": [row, ...], "next_cursor": C | null}

Rows are renamed with the configured field map, then validated by the same functions as file
imports (``catalog.importer.validate_item``, ``profiles.imports.validate_user``). Unknown item
fields are dropped (a tolerant reader: upstreams add fields). A row that fails validation is a
failure of that id, logged with the field and reason; a document of the wrong shape fails the
whole call. Neither ever reaches a client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cache import ObjectCache, SingleFlight
from catalog.importer import ITEM_FIELDS, validate_item
from profiles.imports import validate_user
from storage import fields
from storage.timeutil import parse_timestamp
from storage.types import ItemRecord, UserRecord
from upstream.client import UpstreamClient
from upstream.types import Page, UpstreamError, UpstreamPayloadError

log = logging.getLogger("tailor.upstream")

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[R]):
    value: R | None  # None: the upstream does not know this id
    fetched_at: float


@dataclass(slots=True)
class SourceStats:
    fresh_hits: int = 0
    fetched: int = 0  # ids asked upstream
    stale_served: int = 0
    failed: int = 0  # ids answered with an error
    rejected_rows: int = 0


def _item_row(row: dict[str, Any], now: float) -> ItemRecord:
    return validate_item({k: v for k, v in row.items() if k in ITEM_FIELDS}, now)


def _user_row(row: dict[str, Any], now: float) -> UserRecord:
    # The CRM's own change time (not ours) drives incremental sync; every other extra column
    # is a trait, as in file imports.
    row = dict(row)
    stamp = row.pop("updated_at", None)
    if stamp not in (None, ""):
        try:
            now = parse_timestamp(stamp)
        except ValueError as exc:
            raise fields.FieldError("updated_at", str(exc)) from None
    return validate_user(row, now)


class RecordSource(Generic[R]):
    """Records of one ``kind`` from one upstream; see the module docstring for the contract.

    ``clock``: wall seconds for cache ages (injected in tests). ``validate(row, now)`` ->
    record, raising ``FieldError``; ``id_of(record)`` -> its id.
    """

    def __init__(
        self,
        client: UpstreamClient,
        kind: str,
        validate: Callable[[dict[str, Any], float], R],
        id_of: Callable[[R], str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        cfg = client.config
        self.client = client
        self.kind = kind
        self.name = client.name
        self._validate = validate
        self._id_of = id_of
        self._map = dict(cfg.field_map)
        self._clock = clock
        self.ttl_s = cfg.cache_ttl_s
        self.stale_s = cfg.stale_if_error_s
        self.batch_max = max(1, cfg.batch_max)
        self.cache: ObjectCache[str, _Entry[R]] = ObjectCache(
            cfg.cache_max_bytes, default_ttl=cfg.cache_ttl_s + cfg.stale_if_error_s, timer=clock
        )
        self._flights: SingleFlight[tuple[str, ...]] = SingleFlight()
        self.stats = SourceStats()

    # ------------------------------------------------------------------ by ids
    async def fetch(self, ids: Sequence[str]) -> list[R | BaseException | None]:
        """One entry per id, in order: the record, None (unknown upstream) or the error."""
        now = self._clock()
        answers: dict[str, R | BaseException | None] = {}
        missing: list[str] = []
        for i in dict.fromkeys(ids):
            entry = self.cache.get(i)
            if entry is not None and now - entry.fetched_at < self.ttl_s:
                answers[i] = entry.value
                self.stats.fresh_hits += 1
            else:
                missing.append(i)
        chunks = [missing[k : k + self.batch_max] for k in range(0, len(missing), self.batch_max)]
        results = await asyncio.gather(*(self._chunk(c) for c in chunks))
        for got in results:
            answers.update(got)
        return [answers[i] for i in ids]

    async def _chunk(self, ids: list[str]) -> dict[str, R | BaseException | None]:
        key = tuple(sorted(ids))
        try:
            got = await self._flights.do(key, lambda: self._load(key))
        except UpstreamError as exc:
            return self._stale_or(ids, exc)
        out: dict[str, R | BaseException | None] = {}
        for i in ids:
            value = got.get(i)
            out[i] = self._stale_or([i], value)[i] if isinstance(value, UpstreamError) else value
        return out

    async def _load(self, ids: tuple[str, ...]) -> dict[str, R | UpstreamError | None]:
        self.stats.fetched += len(ids)
        doc = await self.client.get_json(f"/{self.kind}", {"ids": ",".join(ids)})
        rows = self._rows(doc)
        now = self._clock()
        found: dict[str, R | UpstreamError | None] = dict.fromkeys(ids)
        wanted = set(ids)
        for n, row in enumerate(rows):
            raw_id = row.get(self._source_name("id")) if isinstance(row, dict) else None
            try:
                record = self._record(row, now)
            except UpstreamPayloadError as exc:
                if isinstance(raw_id, str) and raw_id in wanted:
                    found[raw_id] = exc
                continue
            rid = self._id_of(record)
            if rid in wanted:
                found[rid] = record
                self.cache.set(rid, _Entry(record, now), tags=[self.tag(rid)])
            else:
                log.warning(
                    "upstream %s: GET /%s answered id %r that was not asked (row %d)",
                    self.name,
                    self.kind,
                    rid,
                    n,
                )
        for i, value in found.items():
            if value is None:  # remember "unknown upstream" too: the local store answers
                self.cache.set(i, _Entry(None, now), tags=[self.tag(i)])
        return found

    def _stale_or(
        self, ids: Sequence[str], exc: UpstreamError
    ) -> dict[str, R | BaseException | None]:
        now = self._clock()
        out: dict[str, R | BaseException | None] = {}
        for i in ids:
            entry = self.cache.get(i)
            if entry is not None and now - entry.fetched_at < self.ttl_s + self.stale_s:
                out[i] = entry.value
                self.stats.stale_served += 1
            else:
                out[i] = exc
                self.stats.failed += 1
        stale = sum(1 for v in out.values() if not isinstance(v, BaseException))
        log.warning(
            "upstream %s: %s; %d of %d ids served stale, %d unavailable",
            self.name,
            exc,
            stale,
            len(ids),
            len(ids) - stale,
        )
        return out

    # ------------------------------------------------------------------ listing (sync)
    async def page(self, updated_since: float | None, cursor: str | None, limit: int) -> Page[R]:
        """One page of the incremental listing; rows failing validation are reported, not raised."""
        params = {"limit": str(limit)}
        if updated_since is not None:
            params["updated_since"] = repr(float(updated_since))
        if cursor:
            params["cursor"] = cursor
        doc = await self.client.get_json(f"/{self.kind}", params)
        rows = self._rows(doc)
        nxt = doc.get("next_cursor")
        if nxt is not None and not isinstance(nxt, str):
            raise self._malformed("`next_cursor` must be a string or null")
        now = self._clock()
        records: list[R] = []
        rejected: list[tuple[str, str]] = []
        for n, row in enumerate(rows):
            try:
                records.append(self._record(row, now))
            except UpstreamPayloadError as exc:
                rid = row.get(self._source_name("id")) if isinstance(row, dict) else None
                rejected.append((str(rid) if rid is not None else f"#{n}", str(exc)))
        return Page(records=records, rejected=rejected, next_cursor=nxt or None)

    # ------------------------------------------------------------------ cache control
    def tag(self, record_id: str) -> str:
        return f"{self.kind[:-1]}:{record_id}"  # "item:i1", "user:u1" (the edge cache's tags)

    def invalidate(self, ids: Sequence[str] | None = None) -> int:
        """Forget cached answers (all, or of ``ids``): after a sync or a purge."""
        if ids is None:
            n = len(self.cache)
            self.cache.clear()
            return n
        return sum(self.cache.delete(i) for i in ids)

    def invalidate_tags(self, tags: Sequence[str]) -> int:
        return self.cache.invalidate_tags(tags)

    async def aclose(self) -> None:
        await self._flights.aclose()
        await self.cache.aclose()

    # ------------------------------------------------------------------ payloads
    def _rows(self, doc: Any) -> list[Any]:
        if not isinstance(doc, dict) or not isinstance(doc.get(self.kind), list):
            raise self._malformed(f'expected {{"{self.kind}": [...]}}, got {type(doc).__name__}')
        return list(doc[self.kind])

    def _malformed(self, why: str) -> UpstreamPayloadError:
        log.error("upstream %s: malformed GET /%s payload: %s", self.name, self.kind, why)
        return UpstreamPayloadError(self.name, f"malformed /{self.kind} payload: {why}")

    def _source_name(self, target: str) -> str:
        for src, dst in self._map.items():
            if dst == target:
                return src
        return target

    def _record(self, row: Any, now: float) -> R:
        if not isinstance(row, dict):
            raise self._malformed(f"a row is a {type(row).__name__}, not an object")
        mapped = {self._map.get(str(k), str(k)): v for k, v in row.items()}
        try:
            return self._validate(mapped, now)
        except fields.FieldError as exc:
            self.stats.rejected_rows += 1
            log.error(
                "upstream %s: invalid row in GET /%s (id %r): field %r: %s",
                self.name,
                self.kind,
                mapped.get("id"),
                exc.field,
                exc.reason,
            )
            raise UpstreamPayloadError(
                self.name,
                f"invalid {self.kind[:-1]} {mapped.get('id')!r}: {exc.field}: {exc.reason}",
            ) from None


def catalog_source(
    client: UpstreamClient, *, clock: Callable[[], float] = time.time
) -> RecordSource[ItemRecord]:
    return RecordSource(client, "items", _item_row, lambda r: r.id, clock=clock)


def crm_source(
    client: UpstreamClient, *, clock: Callable[[], float] = time.time
) -> RecordSource[UserRecord]:
    return RecordSource(client, "users", _user_row, lambda r: r.id, clock=clock)


def parse_field_map(pairs: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """``("sku=id", "name=title")`` -> ``{"sku": "id", "name": "title"}`` (upstream -> Tailor)."""
    if isinstance(pairs, Mapping):
        return dict(pairs)
    out: dict[str, str] = {}
    for pair in pairs:
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"bad field mapping {pair!r}: expected UPSTREAM=TAILOR")
        out[src.strip()] = dst.strip()
    return out

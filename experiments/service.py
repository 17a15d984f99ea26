"""The experiment service of a running gateway: definitions reloaded from their file, assignment
with sticky exposures, recommendation ids, and attribution of the events citing them.

* ``assign(subject)``: evaluate every feature (``experiments.assign.Evaluator``); nothing is
  written, so the edge layer can assign to build cache keys.
* ``expose(subject, variants)``: the variants served for the first time are written as
  exposures (deduplicated: one row per experiment and subject, kept; the row is also the
  sticky assignment). Resolvers call it when they serve what a variant changes.
* ``on_events`` (an ingestion listener, writer thread): an ``identify`` moves the anonymous
  profile's exposures to the user, so the visitor keeps its variants after signing in; a
  click/add_to_cart/purchase whose ``properties.recommendationId`` is a valid id is attributed to
  that recommendation's strategy, the item's source and every variant it was served under.
* ``recommendation_id(...)``: a signed, self-describing id (strategy, variants, item sources),
  so a cached answer shared by many callers still attributes correctly and nothing is written
  per recommendation served.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cachetools import LRUCache

from experiments.assign import NOBODY, Assignment, Evaluator, Subject
from experiments.definitions import DefinitionError, Definitions, RecoParams, load
from storage.experiments import Attribution
from storage.types import EventRecord, anonymous_key

log = logging.getLogger("tailor.experiments")

ATTRIBUTED_TYPES = frozenset({"click", "add_to_cart", "purchase"})
_LABEL = b"tailor recommendation id v1"
_PREFIX = "r1"
_MAX_ID = 4096


class ExperimentStore(Protocol):
    """What the service needs of the store (``storage.experiments.ExperimentRows``)."""

    def exposures_of(self, subject: str) -> dict[str, str]: ...

    def record_exposures(self, rows: list[tuple[str, str, str, float]]) -> int: ...

    def merge_exposures(self, source: str, target: str) -> int: ...

    def record_attributions(self, rows: list[Attribution]) -> int: ...


@dataclass(frozen=True, slots=True)
class Served:
    """What a recommendation id says: the strategy, the variants and each item's source."""

    strategy: str
    variants: Mapping[str, str]
    sources: Mapping[str, str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ExperimentService:
    """Flags and experiments for one store. ``path``: the definitions file (reloaded when its
    modification time changes, checked at most every ``poll_s`` seconds); ``secret``: signs
    recommendation ids."""

    def __init__(
        self,
        store: ExperimentStore,
        path: Path,
        *,
        secret: str,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        sticky_cache: int = 100_000,
    ) -> None:
        self.store = store
        self.path = Path(path)
        self.poll_s = poll_s
        self.clock = clock
        self._key = hmac.new(secret.encode("utf-8"), _LABEL, hashlib.sha256).digest()
        self._lock = threading.Lock()
        # Read and written from the event loop (assign/expose) and the ingestion writer thread
        # (identify merges): every access holds ``_sticky_lock`` (cachetools is not thread-safe).
        self._sticky: LRUCache[str, dict[str, str]] = LRUCache(sticky_cache)
        self._sticky_lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._evaluator = Evaluator(Definitions())
        self.reload()

    # -- definitions -------------------------------------------------------------------------

    @property
    def definitions(self) -> Definitions:
        return self._current().defs

    def reload(self) -> bool:
        """Read the file if it changed; True when new definitions were loaded. An invalid file
        is logged and the previous definitions stay (a typo never stops serving)."""
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            self._checked = time.monotonic()
            if stamp == self._stamp:
                return False
            try:
                defs = load(self.path)
            except DefinitionError as exc:
                log.error("experiment definitions not reloaded: %s", exc)
                self._stamp = stamp
                return False
            self._evaluator = Evaluator(defs)
            self._stamp = stamp
        log.info("experiment definitions loaded (revision %s)", defs.revision or "none")
        return True

    def _current(self) -> Evaluator:
        if time.monotonic() - self._checked >= self.poll_s:
            self.reload()
        return self._evaluator

    @property
    def needs_traits(self) -> bool:
        """Whether any targeting condition reads ``traits`` (else callers need not load them)."""
        return self._current().needs_traits

    @property
    def active(self) -> bool:
        """Whether any feature is defined (without, every assignment is empty)."""
        return bool(self._current().defs.features)

    # -- assignment --------------------------------------------------------------------------

    def sticky_of(self, subject: str) -> dict[str, str]:
        """experiment -> variant already served to ``subject`` (cached; the store's rows)."""
        with self._sticky_lock:
            found = self._sticky.get(subject)
        if found is None:
            found = self.store.exposures_of(subject)
            with self._sticky_lock:
                self._sticky[subject] = found
        return found

    def assign(self, subject: Subject) -> Assignment:
        """Evaluate every feature for ``subject`` (nothing is written: see :meth:`expose`)."""
        evaluator = self._current()
        if not evaluator.defs.features:
            return NOBODY
        sticky = self.sticky_of(subject.key) if subject.key else {}
        return evaluator.evaluate(subject, sticky)

    def expose(self, subject: str | None, variants: Mapping[str, str]) -> int:
        """Record that ``subject`` was served ``variants`` (experiment -> variant); only the
        first exposure per experiment is written. Returns how many rows were new."""
        if not subject or not variants:
            return 0
        sticky = self.sticky_of(subject)
        new = {e: v for e, v in variants.items() if e not in sticky}
        if not new:
            return 0
        now = self.clock()
        written = self.store.record_exposures([(e, subject, v, now) for e, v in new.items()])
        # The store keeps the first row: re-read rather than trust ``new`` (another process).
        self._sticky[subject] = (
            self.store.exposures_of(subject)
            if written < len(new)
            else {
                **sticky,
                **new,
            }
        )
        return written

    def reco_for(self, variants: Mapping[str, str]) -> RecoParams:
        """Recommendation parameters of named variants (a segment token's)."""
        return self._current().reco_for(variants)

    # -- recommendation ids ------------------------------------------------------------------

    def recommendation_id(
        self, strategy: str, variants: Mapping[str, str], sources: Mapping[str, str]
    ) -> str:
        """A signed id naming the strategy, the variants and each item's source."""
        doc = json.dumps(
            {"s": strategy, "v": dict(variants), "i": dict(sources)},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        body = _b64(zlib.compress(doc, 9))
        payload = f"{_PREFIX}.{body}"
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()[:16])

    def read_recommendation_id(self, rid: Any) -> Served | None:
        """What a valid id says; None for anything else (forged, malformed, foreign)."""
        if not isinstance(rid, str) or len(rid) > _MAX_ID:
            return None
        parts = rid.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            return None
        payload = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._sign(payload), parts[2]):
            return None
        try:
            doc = json.loads(zlib.decompress(_unb64(parts[1])))
        except (binascii.Error, ValueError, zlib.error):
            return None
        return Served(str(doc["s"]), dict(doc["v"]), dict(doc["i"]))

    # -- ingestion listener ------------------------------------------------------------------

    def on_events(self, events: Iterable[EventRecord]) -> None:
        """Identify merges and attribution (see the module docstring)."""
        rows: list[Attribution] = []
        for ev in events:
            if ev.type == "identify" and ev.user_id and ev.anonymous_id:
                source = anonymous_key(ev.anonymous_id)
                self.store.merge_exposures(source, ev.user_id)
                with self._sticky_lock:
                    self._sticky.pop(source, None)
                    self._sticky.pop(ev.user_id, None)
            elif ev.type in ATTRIBUTED_TYPES:
                rows.extend(self._attribute(ev))
        if rows:
            self.store.record_attributions(rows)

    def _attribute(self, ev: EventRecord) -> list[Attribution]:
        served = self.read_recommendation_id(ev.properties.get("recommendationId"))
        if served is None:
            return []
        source = served.sources.get(ev.item_id or "", "")
        revenue = 0.0
        if ev.type == "purchase":
            price = ev.properties.get("price", 0) or 0
            quantity = ev.properties.get("quantity", 1) or 1
            if isinstance(price, int | float) and isinstance(quantity, int | float):
                revenue = float(price) * float(quantity)
        pairs = list(served.variants.items()) or [("", "")]
        return [
            Attribution(
                ev.message_id,
                exp,
                variant,
                ev.profile_key,
                ev.type,
                ev.item_id,
                served.strategy,
                source,
                revenue,
                ev.ts,
            )
            for exp, variant in pairs
        ]

"""Privacy: consent checks, erasure across every store, PII hashing and retention pruning.

- Consent per user: ``personalization`` (may answers be personalized) and ``tracking`` (may
  events be stored). Both default to granted (as the users table does); a CRM import or
  ``Mutation.setConsent`` changes them. A request can also opt out of tracking on its own
  (``Sec-GPC: 1`` / ``DNT: 1``): the gateway wraps it in :func:`request_opt_out`.
- Erasure removes a user from the store (user row, events of the user and of every anonymous id
  linked to them, identity links, profiles), from in-memory state, and from every registered
  :class:`Eraser` (caches, user vectors, segment membership: whoever holds per-user data
  registers one), and returns a receipt with counts per store.
- Erasure reaches every process on the store: it is logged in the ``erasures`` table in its
  own transaction (a keyed digest of the user id, the profile keys sealed with a key derived
  from the secret: nobody is named in clear on disk). A running gateway reads the log every
  ``erasure_poll_s`` (:meth:`PrivacyService.sync_erasures` then :meth:`apply_erasures`) and
  runs the same in-memory erasure, and :meth:`PrivacyService.erased_at` lets authentication
  refuse tokens issued before the erasure. Log rows live as long as the longest token.
- PII: configured traits (e-mail, phone, ...) are stored only as salted HMAC-SHA256 digests
  (``"hmac-sha256:<hex>"``); equal inputs (after trimming and lower-casing) map to equal digests,
  so joins on them still work.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from cachetools import TTLCache
from cryptography.fernet import Fernet, InvalidToken

from storage.privacy import (
    ErasureRow,
    erase_subject,
    erasures_since,
    linked_anonymous_ids,
    prune_events_before,
)
from storage.types import EventRecord, Store, UserRecord, anonymous_key

log = logging.getLogger("tailor.privacy")

PII_PREFIX = "hmac-sha256:"

_opt_out: contextvars.ContextVar[bool] = contextvars.ContextVar("tailor_opt_out", default=False)


@contextlib.contextmanager
def request_opt_out() -> Iterator[None]:
    """Within this block (one request), events are not tracked whatever the stored consent."""
    token = _opt_out.set(True)
    try:
        yield
    finally:
        _opt_out.reset(token)


class Eraser(Protocol):
    """Something that holds per-user data outside the store (a cache tier, user vectors, ...)."""

    @property
    def name(self) -> str: ...

    def erase(self, user_id: str, profile_keys: Sequence[str]) -> int:
        """Remove everything about ``user_id`` (and its ``profile_keys``: ``user_id`` plus
        ``"anon:<id>"`` of each linked anonymous id); returns the number of entries removed."""


@dataclass(frozen=True, slots=True)
class FunctionEraser:
    """An :class:`Eraser` from a function (``fn(user_id, profile_keys) -> removed``)."""

    name: str
    fn: Callable[[str, Sequence[str]], int]

    def erase(self, user_id: str, profile_keys: Sequence[str]) -> int:
        return self.fn(user_id, profile_keys)


@dataclass(frozen=True, slots=True)
class Consent:
    personalization: bool = True
    tracking: bool = True


@dataclass(frozen=True, slots=True)
class ErasureReceipt:
    """What an erasure removed: ``counts`` maps ``"store.<table>"`` / eraser names to counts."""

    user_id: str
    counts: Mapping[str, int] = field(default_factory=dict)
    erased_at: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class PiiHasher:
    """Salted HMAC-SHA256 of the configured PII traits (names case-insensitive).

    The store applies :meth:`hash_traits` to every user row it writes (its ``traits_filter``),
    so no configured PII trait reaches the disk in clear, whichever path wrote it.
    """

    def __init__(self, pii_traits: Sequence[str], salt: str) -> None:
        self.pii_traits = frozenset(t.lower() for t in pii_traits)
        self._salt = salt.encode()

    def hash_value(self, value: Any) -> str:
        if isinstance(value, str) and value.startswith(PII_PREFIX):
            return value  # already hashed (re-imports, merges)
        norm = str(value).strip().lower().encode()
        return PII_PREFIX + hmac.new(self._salt, norm, hashlib.sha256).hexdigest()

    def hash_traits(self, traits: Mapping[str, Any]) -> dict[str, Any]:
        """``traits`` with every configured PII trait hashed."""
        return {
            k: (self.hash_value(v) if k.lower() in self.pii_traits and v is not None else v)
            for k, v in traits.items()
        }

    def subject(self, user_id: str) -> str:
        """A keyed digest of a user id exactly as given (the erasure log's ``subject``)."""
        return hmac.new(self._derive(b"subject"), user_id.encode(), hashlib.sha256).hexdigest()

    def seal(self, data: bytes) -> str:
        """``data`` encrypted and authenticated (Fernet: AES-128-CBC + HMAC-SHA256) with a key
        derived from the salt, so only gateways sharing the salt can read it."""
        return self._fernet().encrypt(data).decode("ascii")

    def unseal(self, sealed: str) -> bytes | None:
        """What :meth:`seal` sealed; None when sealed with another key, or altered."""
        try:
            return self._fernet().decrypt(sealed.encode("ascii"))
        except (InvalidToken, ValueError):
            return None

    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self._derive(b"seal")))

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self._salt, b"tailor-erasure-" + label, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class RemoteErasure:
    """An erasure another process made, for this process's in-memory tiers."""

    user_id: str
    profile_keys: tuple[str, ...]


class PrivacyService:
    """Consent, erasure, PII hashing and retention over one store (and the ingestion state)."""

    def __init__(
        self,
        store: Store,
        *,
        hasher: PiiHasher,
        clock: Callable[[], float] = time.time,
        forget: Callable[[Sequence[str], Callable[[], dict[str, int]]], dict[str, int]]
        | None = None,
        tombstone_s: float = 30 * 86_400.0,
    ) -> None:
        """``forget(keys, erase)``: the ingestion service's :meth:`IngestionService.forget`, so
        erasure never interleaves with a write group that could re-create the profile.
        ``tombstone_s``: how long an erasure keeps refusing older tokens (the longest token
        lifetime accepted, ``max_token_ttl_s``); its log row is dropped after that."""
        self.store = store
        self.hasher = hasher
        self.clock = clock
        self._forget = forget
        self.tombstone_s = tombstone_s
        self.erasers: list[Eraser] = []
        # subject digest -> latest erasure time; the log cursor (None: not read yet); erasures
        # this process made itself (its tiers are already clean when the log shows them).
        self._erased: dict[str, float] = {}
        self._erasure_seq: int | None = None
        self._own: set[tuple[str, float]] = set()
        self._erasure_lock = threading.Lock()
        # Consent is read once per tracked event; a short TTL bounds how long a consent change
        # made by another process (a CLI import) takes to apply. Changes made here apply at once.
        self._consent: TTLCache[str, Consent] = TTLCache(maxsize=50_000, ttl=5.0)
        self._consent_lock = threading.Lock()  # erasure touches it from a worker thread

    # ------------------------------------------------------------------ consent
    def consent(self, user_id: str) -> Consent:
        with self._consent_lock:
            hit = self._consent.get(user_id)
        if hit is None:
            hit = _consent_of(self.store.get_user(user_id))
            with self._consent_lock:
                self._consent[user_id] = hit
        return hit

    def set_consent(
        self, user_id: str, *, personalization: bool | None = None, tracking: bool | None = None
    ) -> Consent:
        """Change one or both flags (None keeps the current value); returns the new consent."""
        rec = self.store.get_user(user_id)
        current = _consent_of(rec)
        new = Consent(
            current.personalization if personalization is None else personalization,
            current.tracking if tracking is None else tracking,
        )
        self.store.upsert_users(
            [
                UserRecord(
                    user_id,
                    dict(rec.traits) if rec else {},
                    new.personalization,
                    new.tracking,
                    self.clock(),
                )
            ]
        )
        with self._consent_lock:
            self._consent[user_id] = new
        return new

    def personalization_allowed(self, user_id: str | None) -> bool:
        """Whether answers for ``user_id`` may be personalized (anonymous: unless opted out)."""
        if _opt_out.get():
            return False
        return True if user_id is None else self.consent(user_id).personalization

    def tracking_allowed(self, event: EventRecord) -> bool:
        """The ingestion hook: False drops the event (acknowledged as ``dropped``, not stored)."""
        if _opt_out.get():
            return False
        user = event.user_id
        if user is None and event.anonymous_id is not None:
            user = self.store.resolve_identity(event.anonymous_id)
        return True if user is None else self.consent(user).tracking

    def tracking_allowed_many(self, events: Sequence[EventRecord]) -> list[bool]:
        """:meth:`tracking_allowed` of each event of a batch (the ingestion hook): the consents
        of the batch's users are read once (those not cached yet in one store query), and each
        person (user id; anonymous id when there is none) is decided once."""
        if _opt_out.get():
            return [False] * len(events)
        consents = self._load_consents({ev.user_id for ev in events if ev.user_id is not None})
        by_user: dict[str, bool] = {}
        by_anonymous: dict[str | None, bool] = {}
        out: list[bool] = []
        for ev in events:
            user = ev.user_id
            if user is not None:
                # tracking_allowed(ev) for an event with a user id: that user's consent.
                allowed = by_user.get(user)
                if allowed is None:
                    allowed = by_user[user] = consents[user].tracking
            else:
                allowed = by_anonymous.get(ev.anonymous_id)
                if allowed is None:
                    allowed = by_anonymous[ev.anonymous_id] = self.tracking_allowed(ev)
            out.append(allowed)
        return out

    def _load_consents(self, user_ids: set[str]) -> dict[str, Consent]:
        """The consent of each of ``user_ids``: from the cache, the missing ones read in one
        store query (and cached)."""
        found: dict[str, Consent] = {}
        missing: list[str] = []
        with self._consent_lock:
            cached = self._consent.get
            for user_id in user_ids:
                hit = cached(user_id)
                if hit is None:
                    missing.append(user_id)
                else:
                    found[user_id] = hit
        if not missing:
            return found
        stored = self.store.get_users(missing)
        with self._consent_lock:
            for user_id in missing:
                hit = self._consent.get(user_id)
                if hit is None:
                    hit = self._consent[user_id] = _consent_of(stored.get(user_id))
                # else: set_consent meanwhile: that one wins
                found[user_id] = hit
        return found

    # ------------------------------------------------------------------ PII
    def hash_value(self, value: Any) -> str:
        return self.hasher.hash_value(value)

    def hash_traits(self, traits: Mapping[str, Any]) -> dict[str, Any]:
        return self.hasher.hash_traits(traits)

    # ------------------------------------------------------------------ erasure
    def add_eraser(self, eraser: Eraser) -> None:
        self.erasers.append(eraser)

    def erase(self, user_id: str) -> ErasureReceipt:
        """Remove everything about ``user_id``; the receipt counts what each store removed."""
        counts, keys = self.erase_stores(user_id)
        return self.run_erasers(user_id, keys, counts)

    def erase_stores(self, user_id: str) -> tuple[dict[str, int], list[str]]:
        """The durable part (blocking I/O: callers on an event loop run it in a thread).

        Returns the counts per table and the profile keys the person had.
        """
        keys = self._profile_keys(user_id)
        subject = self.hasher.subject(user_id)
        erased_at = self.clock()

        def erase() -> dict[str, int]:
            # Under the ingestion lock: no identify can link another anonymous id now. The
            # keys found here join ``keys`` in place, so ``forget`` drops their states too.
            keys.extend(k for k in self._profile_keys(user_id) if k not in keys)
            record = ErasureRow(0, subject, self.hasher.seal(orjson.dumps(keys)), erased_at)
            removed = erase_subject(
                self.store, user_id, record=record, log_kept_since=erased_at - self.tombstone_s
            )
            return {f"store.{t}": n for t, n in removed.items()}

        counts = erase() if self._forget is None else self._forget(keys, erase)
        with self._erasure_lock:
            self._own.add((subject, erased_at))
            self._erased[subject] = max(erased_at, self._erased.get(subject, erased_at))
        with self._consent_lock:
            self._consent.pop(user_id, None)
        return counts, keys

    def _profile_keys(self, user_id: str) -> list[str]:
        return [user_id, *(anonymous_key(a) for a in linked_anonymous_ids(self.store, user_id))]

    # ------------------------------------------------------------------ the erasure log
    def erased_at(self, user_id: str) -> float | None:
        """When ``user_id`` was last erased (in this process, or by another one whose erasure
        :meth:`sync_erasures` has read), within the tombstone period; else None."""
        if not self._erased:
            return None
        return self._erased.get(self.hasher.subject(user_id))

    def sync_erasures(self) -> list[RemoteErasure]:
        """Read the erasure log past the cursor (blocking I/O: run it in a thread).

        Remembers every erasure time (for :meth:`erased_at`), drops the ingestion service's
        in-memory states of the erased profiles, and returns the erasures made by other
        processes, for :meth:`apply_erasures` on the event loop. The first call only primes
        the cursor and the erasure times: state loaded after it comes from the cleaned store.
        """
        now = self.clock()
        with self._erasure_lock:
            cursor = self._erasure_seq
        top, rows = erasures_since(self.store, cursor or 0, not_before=now - self.tombstone_s)
        found: list[RemoteErasure] = []
        with self._erasure_lock:
            for row in rows:
                self._erased[row.subject] = max(row.erased_at, self._erased.get(row.subject, 0.0))
                if cursor is None or (row.subject, row.erased_at) in self._own:
                    continue
                keys = self._unseal_keys(row)
                if keys:
                    found.append(RemoteErasure(keys[0], tuple(keys)))
            self._erasure_seq = top
            for subject, at in [
                (s, t) for s, t in self._erased.items() if t < now - self.tombstone_s
            ]:
                self._erased.pop(subject, None)
                self._own.discard((subject, at))
        for erasure in found:
            if self._forget is not None:
                self._forget(erasure.profile_keys, dict)
            with self._consent_lock:
                self._consent.pop(erasure.user_id, None)
        return found

    def apply_erasures(self, found: Sequence[RemoteErasure]) -> None:
        """Run the registered tiers for erasures made elsewhere (on the event loop)."""
        for erasure in found:
            self.run_erasers(erasure.user_id, erasure.profile_keys, {})

    def _unseal_keys(self, row: ErasureRow) -> list[str] | None:
        raw = self.hasher.unseal(row.sealed)
        try:
            keys = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError:
            keys = None
        if isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys):
            return keys
        log.error(  # sealed by a process with another TAILOR_JWT_SECRET / TAILOR_PII_SALT
            "erasure log row %d cannot be read with this gateway's key: every process on one "
            "store needs the same TAILOR_JWT_SECRET / TAILOR_PII_SALT",
            row.seq,
        )
        return None

    def run_erasers(
        self, user_id: str, keys: Sequence[str], counts: dict[str, int]
    ) -> ErasureReceipt:
        """The registered tiers (caches live on the event loop: call this from it)."""
        for eraser in self.erasers:
            try:
                counts[eraser.name] = int(eraser.erase(user_id, keys))
            except Exception:
                # The store is already clean; a failing tier is logged loudly and retried by
                # running the erasure again (it is idempotent).
                log.exception("eraser %s failed for an erasure request", eraser.name)
                counts[eraser.name] = -1
        receipt = ErasureReceipt(user_id, counts, self.clock())
        log.info("erased a user: %s", dict(counts))
        return receipt

    # ------------------------------------------------------------------ retention
    def prune(self, retention_days: float) -> dict[str, int]:
        """Delete events older than ``retention_days`` (and profiles left with no events)."""
        if retention_days <= 0:
            return {"events": 0, "profiles": 0}
        cutoff = self.clock() - retention_days * 86_400.0
        # Profiles that lose every event are deleted; the ingestion state cache checks stored
        # versions before using a cached state, so it cannot resurrect them. Profiles that keep
        # events keep their aggregates (``tailor profiles rebuild`` recomputes them from the log).

        def prune() -> dict[str, int]:
            return prune_events_before(self.store, cutoff)

        return prune() if self._forget is None else self._forget([], prune)


def _consent_of(rec: UserRecord | None) -> Consent:
    """A stored user's consent (the defaults for a user not stored)."""
    return Consent(rec.consent_personalization, rec.consent_tracking) if rec else Consent()

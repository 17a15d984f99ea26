"""Contracts of the persistence layer: records, one protocol per store, and the error hierarchy.

Stores are synchronous: the embedded SQLite backend answers indexed point reads in tens of
microseconds, faster than a hop to a worker thread. Callers move *bulk* work (imports, rebuilds,
event batches) off the event loop themselves; the ingestion writer owns its own thread.

Error hierarchy (mapped to HTTP/GraphQL in ``gateway/errors.py``)::

    StorageError
    ├── NotFound
    ├── IntegrityConflict     (same messageId, different payload)
    ├── SchemaError           (database newer than this code, or a failed migration)
    └── StoreUnavailable      (the database server cannot be reached, or refuses us)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from storage.experiments import Attribution, VariantCounts

JSON = dict[str, Any]


class StorageError(Exception):
    """Base class of every storage failure."""


class NotFound(StorageError):
    pass


class IntegrityConflict(StorageError):
    pass


class SchemaError(StorageError):
    pass


class StoreUnavailable(StorageError):
    """The configured database cannot be reached or refuses the connection (the message says
    which, with the URL's password redacted)."""


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """A catalog item as stored. Timestamps are UTC epoch seconds."""

    id: str
    title: str
    description: str = ""
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    price: float | None = None
    currency: str = "EUR"
    available: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A known user: CRM traits and consent flags. Timestamps are UTC epoch seconds."""

    id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    consent_personalization: bool = True
    consent_tracking: bool = True
    updated_at: float = 0.0


ANONYMOUS_PREFIX = "anon:"


def anonymous_key(anonymous_id: str) -> str:
    """The profile key of an anonymous visitor: ``"anon:" + anonymous_id``."""
    return ANONYMOUS_PREFIX + anonymous_id


def profile_key(user_id: str | None, anonymous_id: str | None) -> str:
    """The profile an actor's data belongs to: the user id when known, else the anonymous key."""
    if user_id is not None:
        return user_id
    if anonymous_id is None:
        raise ValueError("a profile needs a user id or an anonymous id")
    return anonymous_key(anonymous_id)


def user_id_of(key: str) -> str | None:
    """The user id a profile key names, or None for an anonymous visitor's key."""
    return None if key.startswith(ANONYMOUS_PREFIX) else key


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A validated event ready to store. ``ts`` and ``received_at`` are UTC epoch seconds.

    ``profile_key`` is the profile the event belongs to: the user id when known (directly or through
    an identity link), else ``"anon:" + anonymous_id``. ``payload_hash`` fingerprints the client's
    payload, so a replayed messageId with different content is detected as a conflict.
    """

    message_id: str
    type: str
    profile_key: str
    ts: float
    received_at: float
    payload_hash: str
    user_id: str | None = None
    anonymous_id: str | None = None
    item_id: str | None = None
    session_id: str | None = None
    channel: str = "api"
    properties: Mapping[str, Any] = field(default_factory=dict)
    flags: int = 0  # bit 1: timestamp clamped (future beyond skew)


def _event_record_builder() -> Callable[..., EventRecord]:
    # A frozen dataclass's __init__ sets each field through object.__setattr__ (a type lookup
    # per field); the slots' own descriptors set them directly, in a third less time. The
    # record is the same frozen EventRecord either way.
    slots = EventRecord.__dict__
    s0, s1, s2, s3, s4, s5, s6 = (slots[name].__set__ for name in EventRecord.__slots__[:7])
    s7, s8, s9, s10, s11, s12 = (slots[name].__set__ for name in EventRecord.__slots__[7:])
    new = object.__new__

    def build(
        message_id: str,
        type: str,
        profile_key: str,
        ts: float,
        received_at: float,
        payload_hash: str,
        user_id: str | None,
        anonymous_id: str | None,
        item_id: str | None,
        session_id: str | None,
        channel: str,
        properties: Mapping[str, Any],
        flags: int,
    ) -> EventRecord:
        ev: EventRecord = new(EventRecord)
        s0(ev, message_id)
        s1(ev, type)
        s2(ev, profile_key)
        s3(ev, ts)
        s4(ev, received_at)
        s5(ev, payload_hash)
        s6(ev, user_id)
        s7(ev, anonymous_id)
        s8(ev, item_id)
        s9(ev, session_id)
        s10(ev, channel)
        s11(ev, properties)
        s12(ev, flags)
        return ev

    assert EventRecord.__slots__ == tuple(build.__code__.co_varnames[:13])
    return build


#: ``EventRecord(...)`` with every field given positionally, for per-event loops (validation,
#: reading the log): the same record, built faster.
new_event_record = _event_record_builder()


# "refused": an identify of an anonymous id already linked to another user (not stored).
InsertOutcome = Literal["accepted", "duplicate", "conflict", "refused"]


class CatalogStore(Protocol):
    def upsert_items(self, items: Sequence[ItemRecord]) -> int:
        """Insert or replace items in one transaction; returns the number written."""

    def get_items(self, ids: Sequence[str]) -> dict[str, ItemRecord]:
        """The items found among ``ids`` (missing ids are absent from the result)."""

    def iter_items(self) -> Iterator[ItemRecord]: ...

    def count_items(self) -> int: ...


class UserStore(Protocol):
    def upsert_users(self, users: Sequence[UserRecord]) -> int: ...

    def get_user(self, user_id: str) -> UserRecord | None: ...

    def get_users(self, user_ids: Sequence[str]) -> dict[str, UserRecord]:
        """The users found among ``user_ids`` in one query (missing ids are absent)."""

    def count_users(self) -> int: ...


class EventStore(Protocol):
    def insert_events(
        self,
        events: Sequence[EventRecord],
        profile_update: Any = None,
    ) -> list[InsertOutcome]:
        """Store events atomically (all or nothing) and durably before returning.

        Returns one outcome per input event. Accepted ``identify`` events link their anonymous id
        to the user id and re-key the anonymous events in the same transaction; an identify of
        an anonymous id already linked to a different user is ``refused`` (not stored, the link
        never moves).
        ``profile_update``, when given, is called inside the transaction with the accepted events
        and returns profile states to write, so derived state commits together with the events.
        """

    def iter_events(
        self, *, since: float | None = None, profile_key: str | None = None
    ) -> Iterator[EventRecord]:
        """Events in timestamp order, optionally only those at/after ``since`` or of one profile."""

    def count_events(self) -> int: ...

    def newest_event_ts(self) -> float | None:
        """The timestamp of the newest stored event (None when there is none)."""

    def resolve_identity(self, anonymous_id: str) -> str | None:
        """The user id an anonymous id was linked to, if any. Only imports attribute events
        through it: a request's ``X-Anonymous-Id`` never reaches the linked user's profile."""


class ProfileStore(Protocol):
    def get_profile_state(self, profile_key: str) -> JSON | None: ...

    def put_profile_states(self, states: Mapping[str, JSON]) -> None: ...

    def delete_profile_state(self, profile_key: str) -> None: ...

    def iter_profile_keys(self) -> Iterable[str]: ...

    def replace_profile_states(self, states: Mapping[str, JSON]) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    """An API key as stored: ``secret_hash`` is the SHA-256 hex of the secret part."""

    id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class ErasureRow:
    """One erasure in the log (``seq`` is 0 before it is written).

    ``subject`` is a keyed digest of the user id and ``sealed`` the encrypted profile keys: the
    log names nobody in clear (``profiles/privacy.py`` makes and reads both)."""

    seq: int
    subject: str
    sealed: str
    erased_at: float


class ExperimentStore(Protocol):
    """Experiment exposures (a subject's sticky variant) and attributed events
    (``storage/experiments.py``; the same methods on both backends)."""

    def exposures_of(self, subject: str) -> dict[str, str]:
        """experiment -> variant the subject was first served."""

    def record_exposures(self, rows: Sequence[tuple[str, str, str, float]]) -> int:
        """Insert (experiment, subject, variant, ts); an existing (experiment, subject) keeps
        its first row. Returns how many were new."""

    def merge_exposures(self, source: str, target: str) -> int:
        """Move ``source``'s exposures to ``target`` (identify); the target's own win."""

    def forget_experiment_subjects(self, subjects: Iterable[str]) -> int:
        """Erasure: drop these subjects' exposure and attribution rows; returns how many."""

    def record_attributions(self, rows: Sequence[Attribution]) -> int:
        """Insert attribution rows (a replayed event is ignored); returns how many were new."""

    def attributions_by(self, experiment: str) -> list[tuple[str, str, str, str, int]]:
        """(variant, type, strategy, source, events) of one experiment's attributed events."""

    def experiment_counts(self, experiment: str) -> dict[str, VariantCounts]:
        """variant -> what it collected."""


class Store(CatalogStore, UserStore, EventStore, ProfileStore, ExperimentStore, Protocol):
    """Everything the gateway needs from persistence; each backend implements all of it.

    Backends: ``storage.sqlite.SQLiteStore`` (embedded, the default) and
    ``storage.postgres.PostgresStore``; :func:`storage.open_store` picks one. Privacy operations
    (erasure, its log, retention, API keys) are functions of ``storage.privacy`` taking a store.
    Callers outside ``storage/`` know only this protocol.
    """

    @property
    def schema_version(self) -> int:
        """The schema version the database is at (``len(storage.migrations.MIGRATIONS)``)."""

    @property
    def last_profile_version(self) -> float:
        """The version this store object gave the profiles of its latest write."""

    def close(self) -> None: ...

    def ping(self) -> bool:
        """True when the database answers a trivial query (``/readyz``)."""

    def items_updated_since(self, since: float) -> list[ItemRecord]:
        """Items written after ``since`` (UTC epoch seconds), e.g. by another process."""

    def get_profile_versions(self, keys: Sequence[str]) -> dict[str, float]:
        """The version of each stored profile among ``keys``: it changes on every write of that
        profile by any process, so an in-memory copy can be checked against it."""

    def get_profile_states(self, keys: Sequence[str]) -> dict[str, JSON]:
        """The stored states of the profiles among ``keys`` (missing ones are absent)."""

    def event_profile_keys(self) -> list[str]:
        """Every profile key that has at least one stored event."""

    def get_meta(self, key: str) -> str | None:
        """A value of the key/value metadata table (sync cursors, demo parameters)."""

    def set_meta(self, key: str, value: str) -> None: ...

    def put_persisted_queries(self, rows: Sequence[tuple[str, str, str | None]]) -> int:
        """Register ``(sha256 hex, query, operation name)`` rows; returns how many were new."""

    def get_persisted_query(self, sha256: str) -> str | None: ...

    def count_persisted_queries(self) -> int: ...

    def list_persisted_queries(self) -> list[tuple[str, str, str | None]]:
        """Every registered ``(sha256 hex, query, operation name)``, in registration order."""

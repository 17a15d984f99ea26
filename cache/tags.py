"""Tag bookkeeping: which cached keys a purge by tag must drop, and which in-flight loads.

``TagIndex`` only ever holds keys that its owning cache holds: the owner calls ``discard``
from its removal callback (eviction, expiry, delete), so the index is bounded by the cache.

``PurgeFence`` closes the classic race "load starts, data changes, purge runs, load finishes
and stores the pre-change value": purges are recorded against every load in flight, and a
load whose key or tags were purged meanwhile must not store its result.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TagIndex(Generic[K]):
    """Bidirectional index tag -> keys and key -> tags."""

    def __init__(self) -> None:
        self._keys_by_tag: dict[str, set[K]] = {}
        self._tags_by_key: dict[K, frozenset[str]] = {}

    def add(self, key: K, tags: Iterable[str]) -> None:
        """Set ``key``'s tags (replacing the previous ones)."""
        self.discard(key)
        tag_set = frozenset(tags)
        if not tag_set:
            return
        self._tags_by_key[key] = tag_set
        for tag in tag_set:
            self._keys_by_tag.setdefault(tag, set()).add(key)

    def discard(self, key: K) -> None:
        """Forget ``key`` (no error if unknown); empty tags are dropped."""
        tags = self._tags_by_key.pop(key, None)
        if tags is None:
            return
        for tag in tags:
            keys = self._keys_by_tag.get(tag)
            if keys is None:
                continue
            keys.discard(key)
            if not keys:
                del self._keys_by_tag[tag]

    def invalidate(self, tags: Iterable[str]) -> set[K]:
        """Remove and return every key carrying at least one of ``tags``."""
        hit: set[K] = set()
        for tag in set(tags):
            hit |= self._keys_by_tag.get(tag, set())
        for key in hit:
            self.discard(key)
        return hit

    def keys_for(self, tag: str) -> frozenset[K]:
        return frozenset(self._keys_by_tag.get(tag, ()))

    def tags_for(self, key: K) -> frozenset[str]:
        return self._tags_by_key.get(key, frozenset())

    @property
    def tag_count(self) -> int:
        return len(self._keys_by_tag)

    def __len__(self) -> int:
        """Number of tagged keys."""
        return len(self._tags_by_key)

    def __contains__(self, key: object) -> bool:
        return key in self._tags_by_key


@dataclass(eq=False, slots=True)
class Fill(Generic[K]):
    """One load in flight for ``key``; ``purged_tags``/``key_purged`` collect purges since."""

    key: K
    purged_tags: set[str] = field(default_factory=set)
    key_purged: bool = False
    everything_purged: bool = False

    def may_store(self, tags: Iterable[str]) -> bool:
        """Whether a result tagged ``tags`` is still current enough to be stored."""
        if self.key_purged or self.everything_purged:
            return False
        return self.purged_tags.isdisjoint(tags)


class PurgeFence(Generic[K]):
    """Tracks loads in flight; memory is bounded by how many run at once."""

    def __init__(self) -> None:
        self._fills: set[Fill[K]] = set()

    def begin(self, key: K) -> Fill[K]:
        fill: Fill[K] = Fill(key)
        self._fills.add(fill)
        return fill

    def end(self, fill: Fill[K]) -> None:
        self._fills.discard(fill)

    def purged_tags(self, tags: Iterable[str]) -> None:
        tag_set = set(tags)
        for fill in self._fills:
            fill.purged_tags |= tag_set

    def purged_keys(self, keys: Iterable[K]) -> None:
        key_set = set(keys)
        for fill in self._fills:
            if fill.key in key_set:
                fill.key_purged = True

    def purged_all(self) -> None:
        for fill in self._fills:
            fill.everything_purged = True

    def __len__(self) -> int:
        return len(self._fills)

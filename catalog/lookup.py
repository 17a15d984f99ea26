"""An in-memory view of the catalog for hot paths (profiles, trending, filters, resolvers).

Loaded once from the store; a miss (an item imported by another process, e.g. ``tailor import``
while the gateway runs) falls back to the store and is remembered; the gateway's poller calls
``update`` with items written since its last look.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from storage.types import CatalogStore, ItemRecord


class CatalogLookup:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._items: dict[str, ItemRecord | None] = {}
        self.update(store.iter_items())

    def update(self, items: Iterable[ItemRecord]) -> None:
        with self._lock:
            for it in items:
                self._items[it.id] = it

    def item(self, item_id: str) -> ItemRecord | None:
        try:
            return self._items[item_id]
        except KeyError:
            found = self._store.get_items([item_id]).get(item_id)
            with self._lock:
                self._items[item_id] = found
            return found

    def prefetch(self, item_ids: Iterable[str]) -> None:
        """Load the ids not seen yet in one store query (the ingest writer calls this once per
        group, so a batch of events for new items costs one query, not one per item)."""
        misses = [i for i in dict.fromkeys(item_ids) if i not in self._items]
        if not misses:
            return
        found = self._store.get_items(misses)
        with self._lock:
            for item_id in misses:
                self._items.setdefault(item_id, found.get(item_id))

    def categories(self, item_id: str) -> tuple[str, ...]:
        it = self.item(item_id)
        return it.categories if it else ()

    def available(self, item_id: str) -> bool:
        it = self.item(item_id)
        return bool(it and it.available)

    def all_items(self) -> list[ItemRecord]:
        with self._lock:
            return [it for it in self._items.values() if it is not None]

    def all_categories(self) -> list[str]:
        return sorted({c for it in self.all_items() for c in it.categories})

    def __len__(self) -> int:
        return sum(1 for it in self._items.values() if it is not None)

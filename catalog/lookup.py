"""An in-memory view of item categories and availability for hot paths (profiles, trending, filters).

Loaded once from the store; a miss (an item imported by another process, e.g. ``tailor import``
while the gateway runs) falls back to the store and is remembered. ``update`` is called when the
gateway itself writes items.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from storage.types import CatalogStore, ItemRecord


class CatalogLookup:
    def __init__(self, store: CatalogStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._categories: dict[str, tuple[str, ...]] = {}
        self._available: dict[str, bool] = {}
        self.update(store.iter_items())

    def update(self, items: Iterable[ItemRecord]) -> None:
        with self._lock:
            for it in items:
                self._categories[it.id] = it.categories
                self._available[it.id] = it.available

    def _miss(self, item_id: str) -> None:
        found = self._store.get_items([item_id]).get(item_id)
        with self._lock:
            self._categories[item_id] = found.categories if found else ()
            self._available[item_id] = found.available if found else False

    def categories(self, item_id: str) -> tuple[str, ...]:
        cats = self._categories.get(item_id)
        if cats is None:
            self._miss(item_id)
            cats = self._categories[item_id]
        return cats

    def available(self, item_id: str) -> bool:
        if item_id not in self._available:
            self._miss(item_id)
        return self._available[item_id]

    def all_categories(self) -> list[str]:
        with self._lock:
            return sorted({c for cats in self._categories.values() for c in cats})

    def __len__(self) -> int:
        return len(self._categories)

"""Business filters shared by every candidate source, pushed into retrieval with over-fetch.

An :class:`ItemFilter` is what a request asks for (``filter:`` in GraphQL); ``accepts`` decides one
item, ``search_filter`` turns it into the FAISS-side :class:`embeddings.SearchFilter` (categories and
availability natively; price, excluded categories and attributes as an allowed-id set computed
from the catalog).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from embeddings import SearchFilter
from storage.types import ItemRecord

ItemOf = Callable[[str], ItemRecord | None]


@dataclass(frozen=True, slots=True)
class ItemFilter:
    exclude_ids: frozenset[str] = frozenset()
    categories: frozenset[str] | None = None  # the item must be in at least one
    exclude_categories: frozenset[str] = frozenset()
    price_min: float | None = None
    price_max: float | None = None
    available_only: bool = True
    attributes: Mapping[str, Any] = field(default_factory=dict)  # equality on item attributes

    def with_excluded(self, ids: Iterable[str]) -> ItemFilter:
        return ItemFilter(
            self.exclude_ids | frozenset(ids),
            self.categories,
            self.exclude_categories,
            self.price_min,
            self.price_max,
            self.available_only,
            self.attributes,
        )

    @property
    def needs_catalog_scan(self) -> bool:
        return bool(
            self.exclude_categories
            or self.attributes
            or self.price_min is not None
            or self.price_max is not None
        )

    def accepts(self, item: ItemRecord | None) -> bool:
        if item is None or item.id in self.exclude_ids:
            return False
        if self.available_only and not item.available:
            return False
        cats = set(item.categories)
        if self.categories is not None and cats.isdisjoint(self.categories):
            return False
        if not cats.isdisjoint(self.exclude_categories):
            return False
        if self.price_min is not None and (item.price is None or item.price < self.price_min):
            return False
        if self.price_max is not None and (item.price is None or item.price > self.price_max):
            return False
        return all(item.attributes.get(k) == v for k, v in self.attributes.items())

    def search_filter(self, all_items: Callable[[], Iterable[ItemRecord]]) -> SearchFilter:
        allowed = None
        if self.needs_catalog_scan:
            allowed = frozenset(it.id for it in all_items() if self.accepts(it))
        return SearchFilter(
            exclude_ids=self.exclude_ids,
            allowed_ids=allowed,
            categories=self.categories,
            available_only=self.available_only,
        )

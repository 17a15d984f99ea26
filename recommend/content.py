"""Content retrieval: item embeddings in a FAISS index, similar items, semantic search, user vectors.

The serving index is a versioned artifact (``IndexStore``) held in an ``IndexHolder``: a build
writes a new version and swaps it in atomically; readers take a local reference, so a swap never
fails a request. Items imported while the gateway runs are encoded and added to the live index
(``add_items``) without a rebuild; a restart re-adds items newer than the loaded version.

User vectors are computed from the profile's recent interaction history (item, weight, time) and
the current index's item vectors: the behaviour-weighted, time-decayed mean
(``embeddings.user_vector_from_events``). Deriving them on read keeps them consistent with the
index in use (a rebuilt index with another model never meets stale user vectors) and they still
change with every event, since the history does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from embeddings import (
    DEFAULT_ITEM_TEMPLATE,
    ArtifactError,
    EmbeddingError,
    Encoder,
    FaissIndex,
    IndexHolder,
    IndexStore,
    ItemMeta,
    SearchFilter,
    render_item_text,
    user_vector_from_events,
)
from profiles.types import HistoryEvent
from storage.timeutil import parse_timestamp
from storage.types import ItemRecord

ENCODE_CHUNK = 256  # items encoded between two progress reports of ``ContentService.build``

log = logging.getLogger("tailor.content")

History = Sequence[HistoryEvent]  # oldest first


def item_document(item: ItemRecord) -> dict[str, Any]:
    return {
        "id": item.id,
        "title": item.title,
        "description": item.description,
        "categories": list(item.categories),
        "tags": list(item.tags),
        "attributes": dict(item.attributes),
        "price": item.price,
    }


class ContentService:
    """Builds, swaps and queries the item-embedding index. Thread-safe for readers and one writer."""

    name = "content"

    def __init__(
        self,
        encoder_factory: Callable[[], Encoder],
        store: IndexStore,
        *,
        template: str | None = None,
        hnsw_threshold: int | None = None,
        hnsw_m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
        half_life_days: float = 14.0,
    ) -> None:
        self._encoder_factory = encoder_factory
        self._encoder: Encoder | None = None
        self._encoder_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.store = store
        self.template = template or DEFAULT_ITEM_TEMPLATE
        # The graph parameters given; FaissIndex's own defaults for the others.
        given = {
            "hnsw_threshold": hnsw_threshold,
            "hnsw_m": hnsw_m,
            "ef_construction": ef_construction,
            "ef_search": ef_search,
        }
        self.index_params: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        self.half_life_days = half_life_days
        self.holder: IndexHolder[FaissIndex] = IndexHolder()
        # Items updated after this (UTC epoch s) are not in the serving index yet.
        self.loaded_at: float = 0.0
        # The newest stored version, when it failed to load: not read again until a newer one.
        self.unusable_version: str | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use (loading MiniLM takes a few seconds)."""
        if self._encoder is None:
            with self._encoder_lock:
                if self._encoder is None:
                    self._encoder = self._encoder_factory()
        return self._encoder

    @property
    def ready(self) -> bool:
        return self.holder.snapshot()[0] is not None

    @property
    def version(self) -> str | None:
        return self.holder.version

    def load_latest(self) -> bool:
        """Swap in the newest stored version if it is not the one serving; True if swapped.

        A version that fails to load raises `EmbeddingError` once; later calls skip it (and
        return False) until a newer version is stored, so a poller reports it once."""
        latest = self.store.latest()
        if latest is None or latest in (self.holder.version, self.unusable_version):
            return False
        enc = self.encoder
        try:
            index = self.store.load(latest, model_id=enc.model_id, dimension=enc.dimension)
        except EmbeddingError:
            self.unusable_version = latest
            raise
        self.holder.swap(index, latest)
        self.loaded_at = parse_timestamp(self.store.manifest(latest).built_at)
        log.info("serving index version %s (%d items)", latest, len(index))
        return True

    def build(
        self,
        items: Iterable[ItemRecord],
        *,
        show_progress: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        """Encode every item into a new index version, write it and swap it in.

        ``progress(n)``: called after each chunk of ``n`` items is encoded (a progress bar)."""
        items = list(items)
        started = time.time()
        enc = self.encoder
        texts = [render_item_text(item_document(it), self.template) for it in items]
        if progress is None:
            vectors = enc.encode(texts, show_progress=show_progress)
        else:
            chunks = []
            for at in range(0, len(texts), ENCODE_CHUNK):
                chunks.append(enc.encode(texts[at : at + ENCODE_CHUNK]))
                progress(len(chunks[-1]))
            vectors = np.concatenate(chunks) if chunks else np.zeros((0, enc.dimension), np.float32)
        index = FaissIndex(enc.dimension, **self.index_params)
        if items:
            index.add([it.id for it in items], vectors, [_meta(it) for it in items])
        with self._write_lock:
            version = self.store.write(index, enc.model_id)
            self.holder.swap(index, version)
            # The watermark for catching up on later imports comes from the data, not a clock.
            self.loaded_at = max((it.updated_at for it in items), default=0.0)
        log.info("built index %s: %d items in %.1fs", version, len(items), time.time() - started)
        return version

    def add_items(self, items: Sequence[ItemRecord]) -> int:
        """Encode and add (or replace) items in the live index; no rebuild."""
        index = self.holder.snapshot()[0]
        if index is None or not items:
            return 0
        vectors = self.encoder.encode(
            [render_item_text(item_document(it), self.template) for it in items]
        )
        with self._write_lock:
            index.add([it.id for it in items], vectors, [_meta(it) for it in items])
        return len(items)

    # ------------------------------------------------------------------ queries
    def _index(self) -> FaissIndex:
        index = self.holder.snapshot()[0]
        if index is None:
            raise ArtifactError("the item index is not built yet (run `tailor train index`)")
        return index

    def has_item(self, item_id: str) -> bool:
        index = self.holder.snapshot()[0]
        return index is not None and item_id in index

    def item_vector(self, item_id: str) -> np.ndarray | None:
        index = self.holder.snapshot()[0]
        if index is None or item_id not in index:
            return None
        return np.asarray(index.vector(item_id), dtype=np.float32)

    def similar(self, item_id: str, k: int, filt: SearchFilter) -> tuple[list[str], np.ndarray]:
        index = self._index()
        vec = index.vector(item_id)
        flt = SearchFilter(
            filt.exclude_ids | {item_id}, filt.allowed_ids, filt.categories, filt.available_only
        )
        return self._one(index, vec, k, flt)

    def encode_query(self, text: str) -> np.ndarray:
        return np.asarray(self.encoder.encode([text])[0], dtype=np.float32)

    def search(
        self,
        text: str,
        k: int,
        filt: SearchFilter,
        *,
        user_vector: np.ndarray | None = None,
        personal_weight: float = 0.0,
    ) -> tuple[list[str], np.ndarray]:
        """Semantic search; with a user vector the query leans towards the user's taste."""
        query = self.encode_query(text)
        if user_vector is not None and personal_weight > 0:
            query = (1.0 - personal_weight) * query + personal_weight * user_vector
            query = query / max(float(np.linalg.norm(query)), 1e-12)
        return self._one(self._index(), query, k, filt)

    def user_vector(self, history: History) -> np.ndarray | None:
        index = self.holder.snapshot()[0]
        if index is None:
            return None
        events = [
            (index.vector(h.item_id), h.weight, h.ts)
            for h in history
            if h.weight > 0 and h.item_id in index
        ]
        if not events:
            return None
        state = user_vector_from_events(
            events, dimension=index.dimension, half_life_days=self.half_life_days
        )
        return state.vector()

    def similarity(self, anchors: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """Each candidate's cosine with the normalized mean vector of the ``anchors`` (-1 for
        candidates outside the index, and for all when no anchor is in it): one exact scan of
        the candidates, not one vector lookup each (the ranker's content feature)."""
        out = np.full(len(candidates), -1.0)
        index = self.holder.snapshot()[0]
        if index is None or not candidates:
            return out
        vectors = [index.vector(a) for a in anchors if a in index]
        query = np.mean(vectors, axis=0) if vectors else None
        norm = float(np.linalg.norm(query)) if query is not None else 0.0
        if query is None or norm <= 0:
            return out
        wanted = SearchFilter(allowed_ids=frozenset(candidates))
        ids, scores = index.search((query / norm).reshape(1, -1), len(candidates), wanted)
        position = {item: j for j, item in enumerate(candidates)}
        for item, score in zip(ids[0], scores[0], strict=False):
            out[position[item]] = float(score)
        return out

    def for_user(
        self, history: History, k: int, filt: SearchFilter
    ) -> tuple[list[str], np.ndarray]:
        """Items nearest the user's vector (empty when the user has no usable history)."""
        vec = self.user_vector(history)
        if vec is None:
            return [], np.zeros(0, dtype=np.float32)
        return self._one(self._index(), vec, k, filt)

    @staticmethod
    def _one(
        index: FaissIndex, vec: np.ndarray, k: int, filt: SearchFilter
    ) -> tuple[list[str], np.ndarray]:
        ids, scores = index.search(np.asarray(vec, dtype=np.float32).reshape(1, -1), k, filt)
        row = ids[0]
        return row, scores[0, : len(row)].astype(np.float32)


def _meta(item: ItemRecord) -> ItemMeta:
    return ItemMeta(categories=frozenset(item.categories), available=item.available)

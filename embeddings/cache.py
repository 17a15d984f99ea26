"""A persistent embedding cache so unchanged item texts are never encoded twice.

`EmbeddingCache` is a SQLite file (stdlib sqlite3, WAL) keyed by (model id, sha256(text)):
re-running an import after one product description changed re-encodes exactly that
product. Keying by model id means switching models never serves stale vectors.
`CachedEncoder` wraps any `Encoder` with it and counts hits and misses.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from embeddings.types import Encoder, FloatMatrix, IndexMismatch

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    model_id TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dimension INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, text_sha256)
) WITHOUT ROWID
"""

# SQLite's default limit on host parameters is 999 on old builds; stay under it.
_LOOKUP_CHUNK = 500


def text_key(text: str) -> bytes:
    """The cache key of a text: its UTF-8 SHA-256 digest (32 bytes)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Vectors by (model id, text digest) in a SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(_SCHEMA)
            self._conn.commit()

    def get_many(self, model_id: str, keys: Iterable[bytes]) -> dict[bytes, FloatMatrix]:
        """Cached vectors (float32, shape (d,)) for the keys that are present."""
        key_list = list(keys)
        found: dict[bytes, FloatMatrix] = {}
        with self._lock:
            for start in range(0, len(key_list), _LOOKUP_CHUNK):
                chunk = key_list[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    "SELECT text_sha256, dimension, vector FROM embeddings "
                    f"WHERE model_id = ? AND text_sha256 IN ({marks})",
                    [model_id, *chunk],
                )
                for key, dimension, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape != (dimension,):
                        continue  # torn or foreign row: treat as a miss, it gets rewritten
                    found[bytes(key)] = vector
        return found

    def put_many(self, model_id: str, items: Iterable[tuple[bytes, FloatMatrix]]) -> None:
        """Store (key, vector) pairs, replacing existing entries, in one transaction."""
        rows = [
            (model_id, key, int(vec.shape[0]), np.asarray(vec, dtype=np.float32).tobytes())
            for key, vec in items
        ]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def count(self, model_id: str | None = None) -> int:
        """Number of cached vectors (for one model id, or all)."""
        with self._lock:
            if model_id is None:
                (n,) = self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
            else:
                (n,) = self._conn.execute(
                    "SELECT COUNT(*) FROM embeddings WHERE model_id = ?", (model_id,)
                ).fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Cumulative lookups of a `CachedEncoder`: ``hits`` served from the cache, ``misses``
    encoded by the model (duplicates within one call count once per text occurrence)."""

    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CachedEncoder:
    """An `Encoder` that serves known texts from an `EmbeddingCache` and encodes the rest.

    Texts are looked up by sha256 under the wrapped encoder's ``model_id``; misses are
    de-duplicated, encoded in one batched call, stored, then merged back in input order.
    """

    def __init__(self, encoder: Encoder, cache: EmbeddingCache) -> None:
        self._encoder = encoder
        self._cache = cache
        self._stats_lock = threading.Lock()
        self._stats = CacheStats()

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dimension(self) -> int:
        return self._encoder.dimension

    @property
    def stats(self) -> CacheStats:
        """Hits and misses since construction."""
        return self._stats

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> FloatMatrix:
        keys = [text_key(t) for t in texts]
        cached = self._cache.get_many(self.model_id, set(keys))
        cached = {k: v for k, v in cached.items() if v.shape[0] == self.dimension}
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in cached:
                missing.setdefault(key, text)
        if missing:
            fresh = self._encoder.encode(
                list(missing.values()), batch_size=batch_size, show_progress=show_progress
            )
            if fresh.shape != (len(missing), self.dimension):
                raise IndexMismatch(
                    f"encoder {self.model_id} returned {fresh.shape}, "
                    f"expected ({len(missing)}, {self.dimension})"
                )
            new_items = list(zip(missing.keys(), fresh, strict=True))
            self._cache.put_many(self.model_id, new_items)
            cached.update(new_items)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        hits = 0
        for row, key in enumerate(keys):
            out[row] = cached[key]
            if key not in missing:
                hits += 1
        with self._stats_lock:
            self._stats = CacheStats(
                self._stats.hits + hits, self._stats.misses + len(texts) - hits
            )
        if show_progress:
            log.info("embedding cache: %d hits, %d misses", hits, len(texts) - hits)
        return out

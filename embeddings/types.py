"""Contracts of the `embeddings` package: protocols, value types and exceptions.

Exception hierarchy (everything this package raises on purpose)::

    EmbeddingError               base class; map it once in gateway/resolvers
    ├── ModelNotFound            the encoder model directory is missing or unreadable
    │   └── UnsupportedModel     the int8 backend cannot export or serve this model
    ├── IndexMismatch            vectors/artifacts of the wrong dimension or model id
    └── ArtifactError            a stored index version is missing, partial or corrupt

Conventions shared by every implementation:

- Vectors are ``numpy.float32`` arrays, one row per item or text, L2-normalized, so the
  inner product *is* the cosine similarity (range [-1, 1]).
- Item ids are strings (catalog ids); indexes map them to internal integers themselves.
- Scores are similarities: higher is better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]
"""A float32 matrix of shape (n, d); rows are L2-normalized vectors."""

MISSING_SCORE: float = float("-inf")
"""Score used to pad a result row when fewer than k items are eligible."""


class EmbeddingError(Exception):
    """Base class of every error raised on purpose by `embeddings`."""


class ModelNotFound(EmbeddingError):
    """The sentence-transformers model directory does not exist or cannot be loaded."""


class UnsupportedModel(ModelNotFound):
    """The int8 backend cannot serve this model (its pooling or layout is not supported, or
    its int8 export deviates from the fp32 model); the fp32 backend may still."""


class IndexMismatch(EmbeddingError):
    """Vectors or a stored index do not match the expected dimension or model id."""


class ArtifactError(EmbeddingError):
    """A stored index version is missing, incomplete or unreadable."""


@dataclass(frozen=True, slots=True)
class ItemMeta:
    """Filterable facts stored next to an item's vector.

    ``categories`` are catalog category/genre names; ``available`` is False for items that
    must not be recommended right now (out of stock, unpublished).
    """

    categories: frozenset[str] = frozenset()
    available: bool = True


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Which items may appear in a search result.

    - ``exclude_ids``: never return these (already seen/bought, the query item itself).
    - ``allowed_ids``: if not None, return only these (e.g. candidates from another source).
    - ``categories``: if not None, the item must share at least one category with this set.
    - ``available_only``: if True, skip items whose ``ItemMeta.available`` is False.

    The default ``SearchFilter()`` lets everything through, exactly like ``filter=None``.
    """

    exclude_ids: frozenset[str] = field(default_factory=frozenset)
    allowed_ids: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    available_only: bool = False

    def __post_init__(self) -> None:
        # Callers naturally pass sets or lists; freeze them so filters stay hashable values.
        object.__setattr__(self, "exclude_ids", frozenset(self.exclude_ids))
        if self.allowed_ids is not None:
            object.__setattr__(self, "allowed_ids", frozenset(self.allowed_ids))
        if self.categories is not None:
            object.__setattr__(self, "categories", frozenset(self.categories))

    def admits(self, item_id: str, meta: ItemMeta) -> bool:
        """True if the item with this id and meta may be returned."""
        if item_id in self.exclude_ids:
            return False
        if self.allowed_ids is not None and item_id not in self.allowed_ids:
            return False
        if self.available_only and not meta.available:
            return False
        return self.categories is None or not self.categories.isdisjoint(meta.categories)


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalized float32 vectors.

    ``model_id`` names the model (it keys caches and is written into index manifests, so two
    encoders with the same id must produce the same vectors). ``dimension`` is d.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> FloatMatrix:
        """Encode ``texts`` into a float32 array of shape (len(texts), dimension).

        Rows are L2-normalized and in input order; an empty input gives shape (0, dimension).
        ``batch_size`` is the number of texts per forward pass; ``show_progress`` draws a
        progress bar on the terminal (for imports and offline builds).
        """
        ...


@runtime_checkable
class VectorIndex(Protocol):
    """A mutable nearest-neighbour index over L2-normalized vectors, keyed by item id.

    Results of ``search`` are ``(ids, scores)``:

    - ``ids``: a list of q lists of item ids, best first. A row is *shorter than k* when fewer
      than k items are eligible (catalog exhausted or filtered out).
    - ``scores``: float32 array of shape (q, k); ``scores[i, j]`` is the inner product (cosine)
      of query i with ``ids[i][j]``; positions ``j >= len(ids[i])`` hold ``MISSING_SCORE``
      (-inf), so the array is always rectangular.

    Implementations document their own thread-safety.
    """

    @property
    def dimension(self) -> int: ...

    def add(
        self,
        ids: Sequence[str],
        vectors: FloatMatrix,
        meta: Sequence[ItemMeta] | None = None,
    ) -> None:
        """Insert items; ``vectors`` has shape (len(ids), dimension).

        Re-adding an existing id replaces its vector and meta. ``meta`` defaults to
        ``ItemMeta()`` (no categories, available) for every item. Raises ``IndexMismatch``
        for a wrong dimension and ``ValueError`` for mismatched lengths or duplicate ids.
        """
        ...

    def remove(self, ids: Sequence[str]) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        ...

    def search(
        self, vectors: FloatMatrix, k: int, filter: SearchFilter | None = None
    ) -> tuple[list[list[str]], FloatMatrix]:
        """Top-k items for each of the q query rows of ``vectors`` (shape (q, dimension)).

        Only items admitted by ``filter`` are returned; see the class docstring for shapes.
        """
        ...

    def vector(self, item_id: str) -> FloatMatrix:
        """The stored vector of an item, shape (dimension,); raises ``KeyError`` if absent."""
        ...

    def meta(self, item_id: str) -> ItemMeta:
        """The stored meta of an item; raises ``KeyError`` if absent."""
        ...

    def ids(self) -> list[str]:
        """All stored item ids (order unspecified)."""
        ...

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if needed) so ``load`` restores it."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read an index written by ``save``; raises ``ArtifactError`` if files are missing."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, item_id: object) -> bool: ...

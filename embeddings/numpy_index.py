"""`NumpyIndex`: brute-force exact search in numpy — the reference and test double.

It is the executable specification of `VectorIndex`: small, obviously correct and slow
(O(n·d) per query). Use it in tests of code that needs an index, and to check other
backends against (the conformance suite does). Not thread-safe: callers serialize access.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from embeddings import index_support as support
from embeddings.types import ArtifactError, FloatMatrix, IndexMismatch, ItemMeta, SearchFilter

_VECTORS_FILE = "vectors.npy"


class NumpyIndex:
    """Exact inner-product index over a dense numpy matrix (rows kept in insertion slots)."""

    def __init__(self, dimension: int) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        self._dimension = dimension
        self._matrix = np.zeros((0, dimension), dtype=np.float32)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._meta: dict[str, ItemMeta] = {}

    @property
    def dimension(self) -> int:
        return self._dimension

    def add(
        self, ids: Sequence[str], vectors: FloatMatrix, meta: Sequence[ItemMeta] | None = None
    ) -> None:
        id_list, matrix, meta_list = support.check_batch(ids, vectors, meta, self._dimension)
        new_ids: list[str] = []
        new_rows: list[np.ndarray] = []
        for item_id, vec, item_meta in zip(id_list, matrix, meta_list, strict=True):
            row = self._row.get(item_id)
            if row is None:
                self._row[item_id] = len(self._ids) + len(new_rows)
                new_ids.append(item_id)
                new_rows.append(vec)
            else:
                self._matrix[row] = vec
            self._meta[item_id] = item_meta
        if new_rows:
            self._matrix = np.vstack([self._matrix, np.stack(new_rows)])
            self._ids.extend(new_ids)

    def remove(self, ids: Sequence[str]) -> int:
        removed = 0
        for item_id in ids:
            row = self._row.pop(item_id, None)
            if row is None:
                continue
            # Swap-delete keeps the matrix dense; the moved item gets the freed row.
            last = len(self._ids) - 1
            if row != last:
                moved = self._ids[last]
                self._ids[row] = moved
                self._matrix[row] = self._matrix[last]
                self._row[moved] = row
            self._ids.pop()
            self._matrix = self._matrix[:last]
            del self._meta[item_id]
            removed += 1
        return removed

    def search(
        self, vectors: FloatMatrix, k: int, filter: SearchFilter | None = None
    ) -> tuple[list[list[str]], FloatMatrix]:
        support.check_k(k)
        queries = support.as_matrix(vectors, self._dimension)
        all_scores = queries @ self._matrix.T
        rows: list[list[tuple[str, float]]] = []
        for scores in all_scores:
            # Stable sort on -score: ties keep insertion order, which makes results repeatable.
            order = np.argsort(-scores, kind="stable")
            row: list[tuple[str, float]] = []
            for slot in order:
                item_id = self._ids[slot]
                if filter is None or filter.admits(item_id, self._meta[item_id]):
                    row.append((item_id, float(scores[slot])))
                    if len(row) == k:
                        break
            rows.append(row)
        return support.pad_results(rows, k)

    def vector(self, item_id: str) -> FloatMatrix:
        return self._matrix[self._row[item_id]].copy()

    def meta(self, item_id: str) -> ItemMeta:
        return self._meta[item_id]

    def ids(self) -> list[str]:
        return list(self._ids)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / _VECTORS_FILE, self._matrix)
        items = {
            "dimension": self._dimension,
            "ids": self._ids,
            "meta": [support.meta_to_json(self._meta[i]) for i in self._ids],
        }
        support.write_items(directory, items)

    @classmethod
    def load(cls, directory: Path) -> Self:
        directory = Path(directory)
        try:
            items = support.read_items(directory)
            matrix = np.load(directory / _VECTORS_FILE)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read NumpyIndex from {directory}: {exc}") from exc
        index = cls(int(items["dimension"]))
        if matrix.shape != (len(items["ids"]), index.dimension):
            raise IndexMismatch(f"{directory}: vectors {matrix.shape} do not match the id list")
        index.add(items["ids"], matrix, [support.meta_from_json(m) for m in items["meta"]])
        return index

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

"""Input checks, result shaping and meta (de)serialization shared by the index backends.

Keeping these in one place is what makes `FaissIndex` and `NumpyIndex` agree on edge cases
(the conformance suite in tests/embeddings checks that they do).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings.types import MISSING_SCORE, FloatMatrix, IndexMismatch, ItemMeta


def as_matrix(vectors: Any, dimension: int) -> FloatMatrix:
    """Return ``vectors`` as a C-contiguous float32 (n, dimension) array.

    A single vector of shape (dimension,) is treated as one row. Raises ``IndexMismatch`` if
    the width is not ``dimension``.
    """
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise IndexMismatch(f"expected vectors of shape (n, {dimension}), got {matrix.shape}")
    return matrix


def check_batch(
    ids: Sequence[str], vectors: Any, meta: Sequence[ItemMeta] | None, dimension: int
) -> tuple[list[str], FloatMatrix, list[ItemMeta]]:
    """Validate an ``add`` call and return (ids, float32 matrix, meta list)."""
    id_list = [str(item_id) for item_id in ids]
    matrix = as_matrix(vectors, dimension) if id_list else np.zeros((0, dimension), np.float32)
    if matrix.shape[0] != len(id_list):
        raise ValueError(f"{len(id_list)} ids but {matrix.shape[0]} vectors")
    if len(set(id_list)) != len(id_list):
        raise ValueError("duplicate ids in one add() call")
    if meta is None:
        meta_list = [ItemMeta()] * len(id_list)
    else:
        meta_list = list(meta)
        if len(meta_list) != len(id_list):
            raise ValueError(f"{len(id_list)} ids but {len(meta_list)} meta entries")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("vectors contain NaN or infinity")
    return id_list, matrix, meta_list


def check_k(k: int) -> None:
    """Reject non-positive k early, with a clear message."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")


def pad_results(rows: list[list[tuple[str, float]]], k: int) -> tuple[list[list[str]], FloatMatrix]:
    """Turn per-query (id, score) lists into the VectorIndex ``(ids, scores)`` convention."""
    scores = np.full((len(rows), k), MISSING_SCORE, dtype=np.float32)
    ids: list[list[str]] = []
    for i, row in enumerate(rows):
        ids.append([item_id for item_id, _ in row])
        if row:
            scores[i, : len(row)] = [score for _, score in row]
    return ids, scores


def meta_to_json(meta: ItemMeta) -> dict[str, Any]:
    """ItemMeta as a JSON-friendly dict (categories sorted for stable files)."""
    return {"categories": sorted(meta.categories), "available": meta.available}


def meta_from_json(data: Mapping[str, Any]) -> ItemMeta:
    """Inverse of ``meta_to_json``."""
    return ItemMeta(
        categories=frozenset(str(c) for c in data.get("categories", ())),
        available=bool(data.get("available", True)),
    )


ITEMS_FILE = "items.json"


def write_items(directory: Path, items: Mapping[str, Any]) -> None:
    """Write an index's ``items.json`` (ids, metadata, parameters) into ``directory``."""
    (directory / ITEMS_FILE).write_text(json.dumps(items), encoding="utf-8")


def read_items(directory: Path) -> dict[str, Any]:
    """Read an index's ``items.json``; ``OSError``/``ValueError`` when missing or malformed."""
    doc: dict[str, Any] = json.loads((directory / ITEMS_FILE).read_text(encoding="utf-8"))
    return doc


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)

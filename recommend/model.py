"""Base class of the item-scoring models (CF, popularity): id maps, history fold-in,
exclusion, top-k and versioned artifacts on disk.

A model scores items from a *history row* (``1 x n_items`` weights), never from a stored user
id, so new events change recommendations without a retrain and anonymous visitors work too.

On-disk layout of a saved model (one directory per version)::

    manifest.json   {"format": 1, "kind": "ease", "params": {...}, "n_items": N}
    item_ids.json   ["item id", ...]  (int i inside the model is item_ids[i])
    arrays.npz      the fitted arrays (no pickles)

``manifest.json`` is written last (atomically), so a directory with a manifest is complete.
"""

from __future__ import annotations

import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recommend.interactions import InteractionMatrix, history_row
from recommend.types import ArtifactError, ModelNotTrained

FORMAT_VERSION = 1
log = logging.getLogger(__name__)

#: ``{item_id: weight}`` or an iterable of ``(item_id, weight)`` pairs (summed per item).
History = Mapping[str, float] | Iterable[tuple[str, float]]

_REGISTRY: dict[str, type[ItemModel]] = {}


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row of a 2-D score array, best first.

    Entries equal to ``-inf`` are never returned; short rows are padded with id ``-1`` and score
    ``-inf``. Ties are broken by lower column index, so results are deterministic.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    vals = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if k_eff <= 0 or n_rows == 0:
        return ids, vals
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: last key is primary → sort by -score, then by column index.
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    finite = best_scores > -np.inf
    ids[:, :k_eff] = np.where(finite, best, -1)
    vals[:, :k_eff] = np.where(finite, best_scores, -np.inf)
    return ids, vals


def _as_mapping(history: History) -> Mapping[str, float]:
    if isinstance(history, Mapping):
        return history
    merged: dict[str, float] = {}
    for item_id, weight in history:
        merged[item_id] = merged.get(item_id, 0.0) + float(weight)
    return merged


class ItemModel(ABC):
    """A model that scores every catalog item from a user's history row.

    Subclasses implement :meth:`_fit`, :meth:`score`, :meth:`_params`, :meth:`_arrays` and
    :meth:`_restore`; everything else (ids, exclusion, top-k, save/load) lives here.
    """

    kind: ClassVar[str]
    #: ``recommend`` returns nothing for an empty history unless the model can score cold
    #: users (popularity can; CF has no signal and would return arbitrary zero-score items).
    scores_cold_users: ClassVar[bool] = False

    def __init__(self) -> None:
        self.item_ids: tuple[str, ...] = ()
        self.item_index: dict[str, int] = {}
        self._fitted = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _REGISTRY[cls.kind] = cls

    @property
    def name(self) -> str:
        return self.kind

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # -- training -----------------------------------------------------------------------

    def fit(self, interactions: InteractionMatrix) -> Self:
        """Train on all of ``interactions`` (users x items, weights > 0); returns ``self``."""
        started = time.perf_counter()
        self._set_items(interactions.item_ids)
        self._fit(interactions.matrix.astype(np.float32))
        self._fitted = True
        log.info(
            "%s fitted on %d users x %d items (%d interactions) in %.1fs",
            self.kind,
            interactions.n_users,
            interactions.n_items,
            interactions.nnz,
            time.perf_counter() - started,
        )
        return self

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None: ...

    @abstractmethod
    def score(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Scores of every item for each history row: ``(n_rows, n_items)`` float32.

        ``user_items`` is ``(n_rows, n_items)`` CSR of history weights in this model's item
        order. Scores are unitless and only comparable within this model.
        """

    def score_items(self, user_items: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
        """Scores of the items ``cols`` only, for each history row: ``(n_rows, len(cols))``
        (the ranker's CF features; models override it when they can skip the other items)."""
        return self.score(user_items)[:, cols]

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise ModelNotTrained(f"{type(self).__name__} has not been fitted or loaded")

    def _set_items(self, item_ids: Iterable[str]) -> None:
        self.item_ids = tuple(item_ids)
        self.item_index = {t: i for i, t in enumerate(self.item_ids)}

    # -- serving ------------------------------------------------------------------------

    def recommend(
        self,
        history: History,
        k: int,
        exclude: Iterable[str] = frozenset(),
        *,
        exclude_history: bool = True,
    ) -> tuple[list[str], np.ndarray]:
        """Top ``k`` item ids for a history (``{item_id: weight}``), best first, with scores.

        Items in ``exclude`` (and, by default, in the history) are never returned; unknown item
        ids are ignored. Returns ``k`` items whenever ``k`` eligible items exist, except that a
        CF model returns nothing for a history with no known items.
        """
        self._require_fitted()
        row = history_row(_as_mapping(history), self.item_index, self.n_items)
        if row.nnz == 0 and not self.scores_cold_users:
            return [], np.zeros(0, dtype=np.float32)
        scores = self.score(row).astype(np.float32, copy=True)
        banned = [self.item_index[t] for t in exclude if t in self.item_index]
        scores[0, banned] = -np.inf
        if exclude_history:
            scores[0, row.indices] = -np.inf
        ids, vals = top_k(scores, k)
        keep = ids[0] >= 0
        return [self.item_ids[i] for i in ids[0][keep]], vals[0][keep]

    def recommend_batch(
        self,
        user_items: sp.csr_matrix,
        k: int,
        *,
        exclude_seen: bool = True,
        chunk_rows: int = 512,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` item *ints* per history row: ``(ids, scores)``, both ``(n_rows, k)``.

        Rows are padded with id ``-1`` / score ``-inf``. Used by evaluation, where ids stay ints;
        rows are scored ``chunk_rows`` at a time to bound memory (``chunk_rows x n_items``).
        """
        self._require_fitted()
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
        out_ids = np.full((user_items.shape[0], k), -1, dtype=np.int64)
        out_scores = np.full((user_items.shape[0], k), -np.inf, dtype=np.float32)
        for lo in range(0, user_items.shape[0], chunk_rows):
            rows = user_items[lo : lo + chunk_rows]
            scores = self.score(rows).astype(np.float32, copy=True)
            if exclude_seen:
                scores[rows.nonzero()] = -np.inf
            if not self.scores_cold_users:
                scores[np.diff(rows.indptr) == 0] = -np.inf
            out_ids[lo : lo + chunk_rows], out_scores[lo : lo + chunk_rows] = top_k(scores, k)
        return out_ids, out_scores

    # -- artifacts ----------------------------------------------------------------------

    @abstractmethod
    def _params(self) -> dict[str, Any]:
        """JSON-serialisable constructor keyword arguments."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named numpy arrays."""

    @abstractmethod
    def _restore(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Inverse of :meth:`_arrays`."""

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write this fitted model to ``directory`` (created if needed); returns the path."""
        self._require_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        # np.savez's stub types **kwds as its own options (allow_pickle: bool); the arrays are
        # plain keyword arrays here, so call it untyped.
        savez: Any = np.savez
        savez(path / "arrays.npz", allow_pickle=False, **self._arrays())
        (path / "item_ids.json").write_text(json.dumps(list(self.item_ids)), encoding="utf-8")
        manifest = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "params": self._params(),
            "n_items": self.n_items,
        }
        tmp = path / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path / "manifest.json")
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Self:
        """Load a model saved by :meth:`save`; ``cls`` must match the saved kind."""
        model = load_model(directory)
        if not isinstance(model, cls):
            raise ArtifactError(f"{directory} holds a {model.kind!r} model, not {cls.kind!r}")
        return model


def load_model(directory: str | os.PathLike[str]) -> ItemModel:
    """Load any saved :class:`ItemModel`, dispatching on the manifest's ``kind``."""
    path = Path(directory)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        item_ids = json.loads((path / "item_ids.json").read_text(encoding="utf-8"))
        with np.load(path / "arrays.npz", allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read model artifact in {path}: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"unknown model format {manifest.get('format')!r} in {path}")
    model_cls = _REGISTRY.get(manifest.get("kind", ""))
    if model_cls is None:
        raise ArtifactError(f"unknown model kind {manifest.get('kind')!r} in {path}")
    if len(item_ids) != manifest.get("n_items"):
        raise ArtifactError(f"item_ids.json and manifest disagree in {path}")
    model = model_cls(**manifest["params"])
    model._set_items(item_ids)
    model._restore(arrays)
    model._fitted = True
    return model

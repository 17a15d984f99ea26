"""Contracts of the ``recommend`` package: protocols, dataclasses and exceptions.

Conventions shared by every module here:

* Items and users are **string ids** outside the package and **contiguous ints** inside
  (see :class:`recommend.interactions.InteractionMatrix`, which owns both maps).
* Interactions are a ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)`` holding
  ``float32`` weights (summed per user/item pair; always > 0).
* Every source answers ``(ids, scores)``: ids best first, ``scores`` a 1-D ``float32`` numpy
  array of the same length (the ``implicit`` convention). Scores are only comparable within one
  source; :mod:`recommend.blend` normalizes them before mixing.
* Timestamps are UTC epoch seconds (``float``).

Exception hierarchy (the gateway maps it to GraphQL/HTTP errors in one place)::

    RecommendError                 base class of everything raised on purpose here
     ├── ModelNotTrained           recommend/save called before fit (or load of an empty dir)
     └── ArtifactError             a model directory is missing files or has a bad manifest
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np


class RecommendError(Exception):
    """Base class of the errors the ``recommend`` package raises on purpose."""


class ModelNotTrained(RecommendError):
    """A model was asked to recommend or save before :meth:`fit` (or a load) gave it state."""


class ArtifactError(RecommendError):
    """A saved model directory is incomplete, of another kind, or of an unknown format version."""


#: One behavioural event in a user's history: ``(item_id, weight, ts)``; ``weight`` is the
#: caller's per-event-type weight (e.g. view 1.0, purchase 5.0), ``ts`` UTC epoch seconds.
HistoryEvent = tuple[str, float, float]


@dataclass(frozen=True, slots=True)
class UserContext:
    """Who we recommend for.

    ``history`` lists events oldest first, newest last. ``user_id`` is ``None`` for anonymous
    visitors (sources then rely on ``history`` alone, which is why CF models fold in the history
    instead of looking up trained user factors).
    """

    user_id: str | None = None
    history: Sequence[HistoryEvent] = field(default_factory=tuple)
    segment_id: str | None = None

    def item_weights(self) -> dict[str, float]:
        """Sum of event weights per item id (insertion order: first time seen)."""
        weights: dict[str, float] = {}
        for item_id, weight, _ts in self.history:
            weights[item_id] = weights.get(item_id, 0.0) + float(weight)
        return weights


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One ranked item as served: ``score`` is the blended score (unitless, higher is better),
    ``source`` the candidate source that contributed most to it, ``reason`` a short
    human-readable explanation derived from that source."""

    item_id: str
    score: float
    source: str
    reason: str


@runtime_checkable
class CandidateSource(Protocol):
    """Anything that proposes items for a user (CF, content similarity, trending, ...).

    ``name`` identifies the source in blend weights and in ``Recommendation.source``.
    """

    name: str

    def candidates(
        self, user: UserContext, k: int, exclude: frozenset[str]
    ) -> tuple[list[str], np.ndarray]:
        """Return up to ``k`` item ids not in ``exclude``, best first, and their scores.

        ``scores`` is a 1-D ``float32`` array with ``len(ids)`` entries, non-increasing. Fewer
        than ``k`` ids only when fewer eligible items exist. Must not raise for unknown items in
        ``user.history`` (they are ignored).
        """
        ...


#: Which collaborative-filtering model to build; ``auto`` picks by catalog size.
CFKind = Literal["auto", "ease", "knn", "als"]


@dataclass(frozen=True, slots=True)
class CFConfig:
    """Settings of the collaborative-filtering models (see :func:`recommend.cf.choose_cf_model`).

    ``ease_max_items``: above this catalog size ``auto`` switches from EASE (a dense
    ``n_items x n_items`` inverse: ~1.5 GB at 20k items in float32) to ALS.
    """

    kind: CFKind = "auto"
    ease_lambda: float = 300.0
    ease_min_users: int = 2
    ease_max_items: int = 20_000
    knn_neighbours: int = 100
    als_factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 1.0
    als_alpha: float = 2.0
    seed: int = 0
    threads: int = 1

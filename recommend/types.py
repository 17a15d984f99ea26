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
     ├── ArtifactError             a model directory is missing files or has a bad manifest
     └── TreeExportError           fitted conversion trees cannot be exported faithfully (the
                                   installed scikit-learn is unverified or its internals differ)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class RecommendError(Exception):
    """Base class of the errors the ``recommend`` package raises on purpose."""


class ModelNotTrained(RecommendError):
    """A model was asked to recommend or save before :meth:`fit` (or a load) gave it state."""


class ArtifactError(RecommendError):
    """A saved model directory is incomplete, of another kind, or of an unknown format version."""


class TreeExportError(RecommendError):
    """The fitted conversion estimator cannot be exported faithfully with the installed
    scikit-learn (a version outside ``SKLEARN_VERIFIED``, an unreadable layout, or an export
    that disagrees with its ``decision_function``): raised at training time, never serving."""


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One ranked item as served: ``score`` is the blended score (unitless, higher is better),
    ``source`` the candidate source that contributed most to it, ``reason`` a short
    human-readable explanation derived from that source."""

    item_id: str
    score: float
    source: str
    reason: str


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
    #: > 0: EASE also learns from sessions, windows this long (see ``recommend.cf.EASE``).
    ease_session_s: float = 0.0
    ease_max_items: int = 20_000
    knn_neighbours: int = 100
    als_factors: int = 64
    als_iterations: int = 15
    als_regularization: float = 1.0
    als_alpha: float = 2.0
    seed: int = 0
    threads: int = 1

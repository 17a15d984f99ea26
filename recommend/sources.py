"""Candidate sources built from this package's models, and a fixed-list test double.

Both satisfy :class:`~recommend.types.CandidateSource`; the serving pipeline (candidates →
blend → diversity) sees only that protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommend.model import ItemModel
from recommend.types import UserContext


class ModelCandidateSource:
    """Adapts an :class:`~recommend.model.ItemModel` to the ``CandidateSource`` protocol.

    The user's history is folded in on every call (weights summed per item), so the latest
    events count immediately and anonymous visitors get CF results from their session.
    """

    def __init__(self, model: ItemModel, name: str | None = None) -> None:
        self.model = model
        self.name = name or model.name

    def candidates(
        self, user: UserContext, k: int, exclude: frozenset[str]
    ) -> tuple[list[str], np.ndarray]:
        return self.model.recommend(user.item_weights(), k, exclude)


class FixedCandidateSource:
    """Test double: always proposes the same ranked list (minus ``exclude`` and history).

    ``scores`` defaults to ``len(ids), ..., 1``; use it to test blending and the pipeline
    without training anything.
    """

    def __init__(
        self, name: str, ids: Sequence[str], scores: Sequence[float] | None = None
    ) -> None:
        self.name = name
        self.ids = list(ids)
        self.scores = np.asarray(
            scores if scores is not None else range(len(self.ids), 0, -1), dtype=np.float32
        )
        if self.scores.shape != (len(self.ids),):
            raise ValueError("ids and scores must have the same length")
        self.calls: list[tuple[UserContext, int, frozenset[str]]] = []

    def candidates(
        self, user: UserContext, k: int, exclude: frozenset[str]
    ) -> tuple[list[str], np.ndarray]:
        self.calls.append((user, k, exclude))
        seen = {item for item, _, _ in user.history}
        keep = [i for i, item in enumerate(self.ids) if item not in exclude and item not in seen]
        keep = keep[:k]
        return [self.ids[i] for i in keep], self.scores[keep]

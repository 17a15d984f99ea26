"""The serving CF model's slot: the model, its version, its tuned blend weights and history
factors, swapped whole."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from recommend.model import ItemModel


class ModelSlot:
    """Holds the serving CF model, its version and the blend weights tuned for it (if any).

    ``swap`` replaces all of them; readers take one reference to ``state`` so they never see a
    model of one version with the weights of another. ``history_factors`` (event type ->
    multiplier of a history event's profile weight) is set when the version's event-type
    weights were tuned (:func:`recommend.training.history_factors`): the model then scores
    from the history weighted as it was trained.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state: tuple[
            ItemModel | None, str | None, Mapping[str, float] | None, Mapping[str, float] | None
        ] = (None, None, None, None)

    @property
    def model(self) -> ItemModel | None:
        return self.state[0]

    @property
    def version(self) -> str | None:
        return self.state[1]

    @property
    def weights(self) -> Mapping[str, float] | None:
        return self.state[2]

    @property
    def history_factors(self) -> Mapping[str, float] | None:
        return self.state[3]

    def swap(
        self,
        model: ItemModel,
        version: str,
        weights: Mapping[str, float] | None = None,
        history_factors: Mapping[str, float] | None = None,
    ) -> None:
        with self._lock:
            self.state = (
                model,
                version,
                dict(weights) if weights else None,
                dict(history_factors) if history_factors else None,
            )

    def set_weights(self, version: str, weights: Mapping[str, float]) -> bool:
        """Attach tuned weights to the serving model if it is still ``version``; True if so."""
        with self._lock:
            model, current, _, factors = self.state
            if current != version:
                return False
            self.state = (model, current, dict(weights), factors)
            return True

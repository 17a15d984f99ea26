"""Training collaborative filtering on the event log, and its versioned artifacts.

On disk, under the CF root (``<data dir>/models/cf`` in the gateway)::

    <version>/               a CF model (``recommend.model`` layout) + trained.json
    <version>/weights.json   blend weights tuned for that version (``tailor evaluate --tune``)

Versions are written through :class:`storage.artifacts.ArtifactStore` (one naming scheme for
every model and index). Everything here takes explicit arguments, never settings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiles.state import ProfileState
from profiles.types import ProfileConfig
from recommend.cf import choose_cf_model
from recommend.engine import STRATEGIES
from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel, load_model
from recommend.types import CFConfig, RecommendError
from storage.artifacts import ArtifactStore
from storage.types import EventRecord

CF_KINDS = ("auto", "ease", "knn", "als")
WEIGHTS_FILE = "weights.json"
TRAINED_FILE = "trained.json"

log = logging.getLogger("tailor.recommend.training")


def interaction_matrix(events: Iterable[EventRecord], weights: ProfileConfig) -> InteractionMatrix:
    """Events as a user x item matrix (each event weighted per its type, as profiles weigh it)."""
    rows = (
        (ev.profile_key, ev.item_id, ProfileState.event_weight(ev, weights), ev.ts)
        for ev in events
        if ev.item_id and ev.type != "identify"
    )
    return InteractionMatrix.from_rows(rows)


class CFStore:
    """Versioned CF models, each with the blend weights tuned for it (if any)."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        self.artifacts = ArtifactStore(root, kind="cf", marker="manifest.json", keep=keep)

    @property
    def root(self) -> Path:
        return self.artifacts.root

    def versions(self) -> list[str]:
        return self.artifacts.versions()

    def latest(self) -> str | None:
        return self.artifacts.latest()

    def load(self, version: str) -> ItemModel:
        return load_model(self.artifacts.path(version))

    def write(self, model: ItemModel, info: Mapping[str, Any]) -> str:
        """Write a fitted model (and its training summary) as a new version."""

        def fill(tmp: Path, version: str) -> None:
            model.save(tmp)
            (tmp / TRAINED_FILE).write_text(json.dumps({"version": version, **info}, indent=2))

        return self.artifacts.write(fill)

    def trained_info(self, version: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.artifacts.path(version) / TRAINED_FILE).read_text())
        return doc

    def read_weights(self, version: str) -> dict[str, float] | None:
        """The weights tuned for a version, or None (none saved, or unreadable: logged)."""
        path = self.artifacts.path(version) / WEIGHTS_FILE
        if not path.is_file():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            weights = {str(k): float(v) for k, v in doc["weights"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable tuned weights %s: %s", path, exc)
            return None
        known = set(STRATEGIES) | {"context"}
        if not weights or set(weights) - known or any(w < 0 for w in weights.values()):
            log.warning("ignoring tuned weights %s: unknown sources or negative weights", path)
            return None
        return weights

    def save_weights(
        self,
        weights: Mapping[str, float],
        info: Mapping[str, Any],
        configured: Mapping[str, float],
        version: str | None = None,
    ) -> Path:
        """Write tuned blend weights next to a version (default: the newest); returns the file.

        Sources the tuner did not see (e.g. ``context``, which needs a viewed item) keep their
        configured weight, scaled like the tuned ones, so the saved file is a complete weight map.
        """
        version = version or self.latest()
        if version is None:
            raise RecommendError(
                "no CF model version to attach weights to: run `tailor train cf` first"
            )
        root = self.artifacts.path(version)
        if not self.artifacts.exists(version):
            raise RecommendError(f"no CF model version {version!r}")
        tuned_total = sum(configured[name] for name in weights if name in configured) or 1.0
        scale = sum(weights.values()) / tuned_total
        complete = {name: round(w * scale, 6) for name, w in configured.items()}
        complete.update(weights)
        doc = json.dumps({"weights": complete, **info}, indent=2, sort_keys=True)
        self.artifacts.write_file(version, WEIGHTS_FILE, doc)
        return root / WEIGHTS_FILE


def train_cf(
    events: Iterable[EventRecord], config: CFConfig, weights: ProfileConfig, store: CFStore
) -> tuple[str, dict[str, Any], ItemModel]:
    """Fit a CF model on the interaction log and write it as a new version of ``store``."""
    started = time.time()
    matrix = interaction_matrix(events, weights)
    if matrix.n_items == 0:
        raise RecommendError("no interactions to train on: import events first")
    model = choose_cf_model(matrix.n_items, config)
    model.fit(matrix)
    info = {
        "kind": model.kind,
        "users": matrix.n_users,
        "items": matrix.n_items,
        "interactions": int(matrix.matrix.nnz),
        "trained_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.time() - started, 2),
    }
    version = store.write(model, info)
    log.info(
        "trained %s CF model %s on %d interactions in %.1fs",
        model.kind,
        version,
        info["interactions"],
        info["seconds"],
    )
    return version, {"version": version, **info}, model

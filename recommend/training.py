"""Training collaborative filtering on the event log, and its versioned artifacts.

``train_cf`` tunes before it fits (bounded by ``tune_budget_s``): the CF parameters, the
training weight of explicit ratings and the relative weights of the event types on a validation
split of the log (:mod:`recommend.cf_tuning`; chosen type weights are recorded as
``event_weights`` in ``trained.json`` and serving folds the history in with them, see
:func:`history_factors`), then the blend weights of the serving sources (CF, trending and,
with an item index, content) on another (:func:`recommend.offline.evaluate.tune_blend_weights`),
so a freshly trained gateway never serves the fixed default weights.

On disk, under the CF root (``<data dir>/models/cf`` in the gateway)::

    <version>/               a CF model (``recommend.model`` layout) + trained.json (the training
                             summary: the chosen parameters, rating curve, event-type
                             weights and every trial)
    <version>/weights.json   blend weights tuned for that version (``tailor train cf``; replaced by
                             ``tailor evaluate --tune``)

Versions are written through :class:`storage.artifacts.ArtifactStore` (one naming scheme for
every model and index). Everything here takes explicit arguments, never settings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from profiles.state import ProfileState
from profiles.types import ProfileConfig
from recommend.cf import choose_cf_model
from recommend.cf_tuning import RATING_CURVES, TrainedOn, rating_weight, tune_cf
from recommend.content import ContentService
from recommend.engine import STRATEGIES
from recommend.interactions import InteractionMatrix
from recommend.model import ItemModel, load_model
from recommend.offline.evaluate import Strategy, tune_blend_weights
from recommend.offline.strategies import ContentSimilarity, DecayedPopularity
from recommend.types import CFConfig, RecommendError
from storage.artifacts import ArtifactStore, VersionedStore
from storage.types import EventRecord

CF_KINDS = ("auto", "ease", "knn", "als")
WEIGHTS_FILE = "weights.json"
TRAINED_FILE = "trained.json"

log = logging.getLogger("tailor.recommend.training")


def interaction_matrix(
    events: Iterable[EventRecord], weights: ProfileConfig, *, rating: str = "linear"
) -> InteractionMatrix:
    """Events as a user x item matrix (each event weighted per its type, as profiles weigh it;
    ``rate`` events by ``rating``, a curve of :data:`recommend.cf_tuning.RATING_CURVES` —
    ``linear`` is how profiles weigh them)."""

    def weight(ev: EventRecord) -> float:
        if ev.type != "rate" or rating == "linear":
            return ProfileState.event_weight(ev, weights)
        value = float(ev.properties.get("value") or 0.0)
        return rating_weight(value, float(weights.weights.get("rate", 0.0)), rating)

    rows = (
        (ev.profile_key, ev.item_id, weight(ev), ev.ts)
        for ev in events
        if ev.item_id and ev.type != "identify"
    )
    return InteractionMatrix.from_rows(rows)


class EventColumns:
    """The events of :func:`interaction_matrix` as columns, to weigh again per event type
    cheaply (the CF tuner's event-type search): :meth:`matrix` has the id maps of
    ``interaction_matrix(events, weights)`` whatever the type weights."""

    def __init__(self, events: Iterable[EventRecord], weights: ProfileConfig) -> None:
        kept = [ev for ev in events if ev.item_id and ev.type != "identify"]
        self.configured = dict(weights.weights)
        self.users = np.array([ev.profile_key for ev in kept], dtype=str)
        self.items = np.array([ev.item_id for ev in kept], dtype=str)
        self.types = np.array([ev.type for ev in kept], dtype=str)
        self.ts = np.array([ev.ts for ev in kept], dtype=np.float64)
        self.values = np.array(
            [float(ev.properties.get("value") or 0.0) if ev.type == "rate" else 0.0 for ev in kept]
        )
        self.item_ids = tuple(dict.fromkeys(self.items.tolist()))

    def counts(self) -> dict[str, int]:
        """Events per type, most frequent first."""
        names, n = np.unique(self.types, return_counts=True)
        order = np.argsort(-n, kind="stable")
        return {str(names[i]): int(n[i]) for i in order}

    def matrix(self, curve: str, types: Mapping[str, float]) -> InteractionMatrix:
        """The events weighted by ``types`` (other types: their configured weight), ratings
        by ``curve`` on top of the ``rate`` weight, as :func:`interaction_matrix` does."""
        table = {**self.configured, **types}
        base = np.array([float(table.get(t, 0.0)) for t in self.types.tolist()])
        rate = self.types == "rate"
        w = base.copy()
        if curve != "binary":
            pairs = zip(self.values[rate], base[rate], strict=True)
            w[rate] = [rating_weight(v, b, curve) for v, b in pairs]
        return InteractionMatrix.from_arrays(
            self.users, self.items, w, self.ts, item_ids=self.item_ids
        )


def history_factors(
    info: Mapping[str, Any], configured: Mapping[str, float]
) -> dict[str, float] | None:
    """How serving scales a history event's profile weight for a CF version whose event-type
    weights were tuned (``event_weights`` in its training summary): tuned / configured per
    type (types the configuration weighs 0 stay 0). None: nothing tuned, nothing to scale."""
    tuned = info.get("event_weights")
    if not isinstance(tuned, Mapping) or not tuned:
        return None
    factors = {
        str(t): float(w) / float(configured[t])
        for t, w in tuned.items()
        if float(configured.get(t, 0.0)) > 0
    }
    return factors or None


class CFStore(VersionedStore):
    """Versioned CF models, each with the blend weights tuned for it (if any)."""

    def __init__(self, root: Path, *, keep: int = 3) -> None:
        self.artifacts = ArtifactStore(root, kind="cf", marker="manifest.json", keep=keep)

    def load(self, version: str) -> ItemModel:
        return load_model(self.artifacts.path(version))

    def write(
        self,
        model: ItemModel,
        info: Mapping[str, Any],
        weights: Mapping[str, Any] | None = None,
    ) -> str:
        """Write a fitted model (and its training summary) as a new version; ``weights`` (the
        ``weights.json`` document: tuned blend weights and how they were found) goes in the
        same version, so the gateway never serves the model without them."""

        def fill(tmp: Path, version: str) -> None:
            model.save(tmp)
            (tmp / TRAINED_FILE).write_text(json.dumps({"version": version, **info}, indent=2))
            if weights is not None:
                (tmp / WEIGHTS_FILE).write_text(json.dumps(weights, indent=2, sort_keys=True))

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
        complete = complete_weights(weights, configured)
        doc = json.dumps({"weights": complete, **info}, indent=2, sort_keys=True)
        self.artifacts.write_file(version, WEIGHTS_FILE, doc)
        return root / WEIGHTS_FILE


def complete_weights(
    tuned: Mapping[str, float], configured: Mapping[str, float]
) -> dict[str, float]:
    """A complete weight map: the tuned sources as tuned; the others (e.g. ``context``, which
    needs a viewed item, or ``segment``) keep their configured weight, scaled like the tuned."""
    tuned_total = sum(configured[name] for name in tuned if name in configured) or 1.0
    scale = sum(tuned.values()) / tuned_total
    complete = {name: round(w * scale, 6) for name, w in configured.items()}
    complete.update(tuned)
    return complete


@dataclass(frozen=True)
class CFTraining:
    """How ``train_cf`` tunes: the time budget of the CF search and of the blend search (0:
    no tuning, the configured setting and weights), the seed of the validation splits, the
    trending half-life of the blend's trending source and the configured blend weights."""

    tune_budget_s: float = 60.0
    seed: int = 0
    half_life_s: float = 48 * 3600.0
    configured_weights: Mapping[str, float] = field(default_factory=dict)


def train_cf(
    events: Iterable[EventRecord],
    config: CFConfig,
    weights: ProfileConfig,
    store: CFStore,
    *,
    training: CFTraining | None = None,
    content: ContentService | None = None,
) -> tuple[str, dict[str, Any], ItemModel, dict[str, float] | None]:
    """Tune, fit and write a CF model as a new version of ``store`` (see the module docstring).

    Returns the version, its training summary, the fitted model and the tuned blend weights
    (None without tuning); ``content`` (a ready item index) joins the blend search."""
    training = training or CFTraining()
    started = time.time()
    events = list(events)
    served = interaction_matrix(events, weights)
    if served.n_items == 0 or served.nnz == 0:
        raise RecommendError("no interactions to train on: import events first")
    variants = {"linear": served}
    if any(ev.type == "rate" for ev in events):
        for curve in RATING_CURVES[1:]:
            variants[curve] = interaction_matrix(events, weights, rating=curve)
    info: dict[str, Any] = {}
    curve = "linear"
    if training.tune_budget_s > 0 and served.nnz >= 20:
        columns = EventColumns(events, weights)
        present = {t: float(weights.weights.get(t, 0.0)) for t in columns.counts()}
        tuning = tune_cf(
            served,
            variants,
            config,
            budget_s=training.tune_budget_s,
            seed=training.seed,
            reweigh=columns.matrix,
            event_weights=present,
        )
        config, curve = tuning.config, tuning.curve
        chosen_types: dict[str, Any] = {}
        if tuning.event_weights is not None:
            # Train and serve under the chosen type weights (serving scales the history).
            weights = dataclasses.replace(
                weights, weights={**weights.weights, **tuning.event_weights}
            )
            served = interaction_matrix(events, weights)
            variants = {c: interaction_matrix(events, weights, rating=c) for c in variants}
            info["event_weights"] = dict(tuning.event_weights)
            chosen_types = {"event_weights": dict(tuning.event_weights)}
        info["tuning"] = {
            "chosen": {**tuning.params(), "rating_curve": curve, **chosen_types},
            "validation_ndcg@10": round(tuning.ndcg, 6),
            "validation": tuning.validation,
            "trials": tuning.trials,
            "seconds": tuning.seconds,
        }
    model = choose_cf_model(served.n_items, config)
    model.fit(variants[curve])
    tuned, weights_doc = _tune_blend(model, variants[curve], served, training, content)
    if tuned is not None:
        info["blend"] = {k: v for k, v in weights_doc.items() if k != "weights"}
    info = {
        "kind": model.kind,
        "params": model._params(),
        "rating_curve": curve,
        "users": served.n_users,
        "items": served.n_items,
        "interactions": int(served.matrix.nnz),
        "trained_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.time() - started, 2),
        **info,
    }
    version = store.write(model, info, weights_doc if tuned is not None else None)
    log.info(
        "trained %s CF model %s on %d interactions in %.1fs",
        model.kind,
        version,
        info["interactions"],
        info["seconds"],
    )
    return version, {"version": version, **info}, model, weights_doc.get("weights")


def _tune_blend(
    model: ItemModel,
    train_variant: InteractionMatrix,
    served: InteractionMatrix,
    training: CFTraining,
    content: ContentService | None,
) -> tuple[dict[str, float] | None, dict[str, Any]]:
    """Blend weights of CF (the chosen setting), trending and content on a validation split of
    the served interactions (skipped without a budget or with too little data)."""
    if training.tune_budget_s <= 0 or served.nnz < 20:
        return None, {}
    started = time.time()
    sources: dict[str, Strategy] = {
        "cf": TrainedOn(type(model)(**model._params()), train_variant),
        "trending": DecayedPopularity(training.half_life_s),
    }
    if content is not None and content.ready:
        sources["content"] = ContentSimilarity(content)
    data = served
    cap = max(200, min(5000, 20_000_000 // max(served.n_items, 1)))
    active = np.flatnonzero(np.diff(served.matrix.indptr) > 1)
    if active.size > cap:  # the grid scores dense (users x items) blends: bound the users
        keep = np.random.default_rng(training.seed).choice(active, cap, replace=False)
        data = served.select(np.isin(served.entry_users(), keep))
    try:
        result = tune_blend_weights(sources, data, seed=training.seed)
    except RecommendError as exc:  # e.g. the index holds none of the interacted items
        log.warning("blend weights not tuned: %s", exc)
        return None, {}
    doc = {
        "weights": complete_weights(result.weights, training.configured_weights),
        "metric": result.metric,
        "validation_ndcg": round(result.score, 6),
        "seed": training.seed,
        "split": "random",
        "trials": len(result.trials),
        "tuned_by": "tailor train cf",
        "seconds": round(time.time() - started, 2),
    }
    return result.weights, doc

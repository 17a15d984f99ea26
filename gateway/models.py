"""The model lifecycle of a running gateway and the CLI: build or load the item index, train and
load the CF and conversion models, and poll for new artifact versions and newly imported items.

The artifact stores and training parameters come from ``gateway.wiring.model_stores``; the
domain work is in ``recommend.training``, ``recommend.conversion``, ``recommend.content`` and
``segments.service``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embeddings import EmbeddingError
from gateway.wiring import ModelStores
from profiles.types import ConversionModelNotFound
from recommend.conversion import train_conversion
from recommend.training import train_cf as fit_cf
from recommend.types import CFConfig
from resolvers.context import Services

log = logging.getLogger("tailor.models")


@dataclass
class Refresh:
    """What one refresh changed: a model version swapped, and items new to the live index."""

    swapped: bool = False
    changed_items: list[str] = field(default_factory=list)


def ensure_index(services: Services, *, show_progress: bool = False) -> str | None:
    """Serve the newest stored index; build one when the catalog has items but no index exists."""
    return _ensure_index(services, show_progress=show_progress)[0]


def _ensure_index(services: Services, *, show_progress: bool) -> tuple[str | None, list[str]]:
    content = services.content
    try:
        if content.load_latest() or content.ready:
            return content.version, catch_up_items(services)
    except EmbeddingError as exc:
        log.warning("stored index not usable (%s); rebuilding", exc)
    items = services.catalog.all_items()
    if not items:
        return None, []
    return content.build(items, show_progress=show_progress), []


def catch_up_items(services: Services) -> list[str]:
    """Add items written since the serving index was built (imports by other processes).

    Returns the ids of the new or changed items (their cached answers must be dropped)."""
    content = services.content
    fresh = services.store.items_updated_since(content.loaded_at)
    if not fresh:
        return []
    services.catalog.update(fresh)
    content.loaded_at = max(it.updated_at for it in fresh)
    added = content.add_items(fresh)
    log.info("added %d new or changed items to the live index", added)
    return [it.id for it in fresh]


def refresh_models(services: Services, stores: ModelStores) -> Refresh:
    """Everything the poller does once: index versions, new items, CF versions (and their tuned
    weights), conversion versions, segment versions."""
    index_before = services.content.version
    _version, changed = _ensure_index(services, show_progress=False)
    swapped = services.content.version != index_before
    swapped = load_cf_latest(services, stores) or swapped
    swapped = load_conversion_latest(services, stores) or swapped
    swapped = services.segments.load_latest() or swapped
    return Refresh(swapped, changed)


async def poll_models(
    services: Services, stores: ModelStores, on_refresh: Callable[[Refresh], Any]
) -> None:
    """Background task: refresh every ``poll_s``; ``on_refresh`` runs on the loop after each."""
    while True:
        await asyncio.sleep(stores.poll_s)
        try:
            refresh = await asyncio.to_thread(refresh_models, services, stores)
        except Exception:  # keep polling; the serving model stays as it is
            log.exception("model poll failed")
            continue
        on_refresh(refresh)


def train_cf(
    services: Services, stores: ModelStores, *, config: CFConfig | None = None
) -> tuple[str, dict[str, Any]]:
    """Fit a CF model on the whole event log, write it as a new version and serve it
    (``config`` overrides the configured CF settings)."""
    version, info, model = fit_cf(
        services.store.iter_events(),
        config or stores.cf_config,
        services.profile_config,
        stores.cf,
    )
    services.recommender.cf.swap(model, version)
    return version, info


def load_cf_latest(services: Services, stores: ModelStores) -> bool:
    """Serve the newest CF version (with its tuned weights); also picks up weights tuned later."""
    slot = services.recommender.cf
    version = stores.cf.latest()
    if version is None:
        return False
    weights = stores.cf.read_weights(version)
    if version == slot.version:
        if weights is not None and weights != slot.weights:
            slot.set_weights(version, weights)
            log.info("CF model %s: serving tuned blend weights %s", version, weights)
        return False
    slot.swap(stores.cf.load(version), version, weights)
    log.info("serving CF model %s%s", version, " with tuned blend weights" if weights else "")
    return True


def train_conversion_model(
    services: Services, stores: ModelStores, *, seed: int = 0
) -> tuple[str, dict[str, float]]:
    """Train on the event log (temporal cutoffs), write a new version and serve it.

    The log ends at its newest event (or now, if that is earlier): the holdout cutoff sits one
    horizon before that, so its labels are complete. Raises ``InsufficientTrainingData`` when
    the log is too short for ``conversion_cutoffs`` horizons.
    """
    events = list(services.store.iter_events())
    end = min(services.clock(), events[-1].ts + 1.0) if events else services.clock()
    model, metrics = train_conversion(
        events,
        horizon_days=stores.conversion_horizon_days,
        config=services.profile_config,
        categories=services.catalog.categories,
        now=end,
        n_cutoffs=stores.conversion_cutoffs,
        seed=seed,
    )
    version = stores.conversion.write(model)
    services.conversion = model
    return version, metrics


def load_conversion_latest(services: Services, stores: ModelStores) -> bool:
    versions = stores.conversion.versions()
    current = services.conversion.version if services.conversion is not None else None
    if not versions or versions[-1] == current:
        return False
    try:
        services.conversion = stores.conversion.load(versions[-1])
    except ConversionModelNotFound as exc:
        log.warning("conversion model %s not usable: %s", versions[-1], exc)
        return False
    log.info("serving conversion model %s", versions[-1])
    return True

"""The model lifecycle of a running gateway and the CLI: build or load the item index, train and
load the CF, ranker and conversion models, and poll for new artifact versions and newly imported items
(and, on its own shorter interval, for erasures made by other processes).

The artifact stores and training parameters come from ``gateway.wiring.model_stores``; the
domain work is in ``recommend.training``, ``recommend.conversion``, ``recommend.content`` and
``segments.service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from embeddings import EmbeddingError
from gateway.wiring import ModelStores
from profiles.types import ConversionModelNotFound
from recommend.ranker import Ranker
from recommend.ranker_training import RankerTraining, ServingParts
from recommend.ranker_training import train_ranker as fit_ranker
from recommend.training import CFTraining, history_factors
from recommend.training import train_cf as fit_cf
from recommend.types import ArtifactError, CFConfig, RecommendError
from resolvers.context import Services
from storage.threads import in_thread

log = logging.getLogger("tailor.models")


@dataclass
class Refresh:
    """What one refresh changed: a model version swapped, and items new to the live index."""

    swapped: bool = False
    changed_items: list[str] = field(default_factory=list)


def ensure_index(
    services: Services,
    *,
    show_progress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> str | None:
    """Serve the newest stored index; build one when the catalog has items but no index exists.
    ``progress(n)``: told of each chunk of items encoded."""
    return _ensure_index(services, show_progress=show_progress, progress=progress)[0]


def _ensure_index(
    services: Services,
    *,
    show_progress: bool,
    progress: Callable[[int], None] | None = None,
    build: bool = True,
) -> tuple[str | None, list[str]]:
    """``build=False``: only load a stored version; building is another process's job."""
    content = services.content
    try:
        if content.load_latest() or content.ready:
            return content.version, catch_up_items(services)
    except EmbeddingError as exc:
        if not build:
            log.warning(
                "stored index not usable (%s); not rebuilding it here (index_build_on_start is "
                "off): run `tailor train index`",
                exc,
            )
            return None, []
        log.warning("stored index not usable (%s); rebuilding", exc)
    items = services.catalog.all_items()
    if not items or not build:
        return None, []
    return content.build(items, show_progress=show_progress, progress=progress), []


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
    weights), ranker versions, conversion versions, segment versions."""
    index_before = services.content.version
    _version, changed = _ensure_index(services, show_progress=False, build=stores.build_index)
    swapped = services.content.version != index_before
    swapped = load_cf_latest(services, stores) or swapped
    swapped = load_ranker_latest(services, stores) or swapped
    swapped = load_conversion_latest(services, stores) or swapped
    swapped = services.segments.load_latest() or swapped
    return Refresh(swapped, changed)


async def poll_models(
    services: Services,
    stores: ModelStores,
    on_refresh: Callable[[Refresh], Any],
    wake: asyncio.Event | None = None,
) -> None:
    """Background task: refresh every ``poll_s``; ``on_refresh`` runs on the loop after each.

    ``wake``: set it to refresh now (a fleet's version announcement) instead of at the next poll.
    """
    while True:
        if wake is None:
            await asyncio.sleep(stores.poll_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), stores.poll_s)
            wake.clear()
        try:
            refresh = await in_thread(refresh_models, services, stores)
        except Exception:  # keep polling; the serving model stays as it is
            log.exception("model poll failed")
            continue
        on_refresh(refresh)


def serving_versions(services: Services) -> dict[str, str | None]:
    """The artifact version of each kind of model this process serves (None: none loaded)."""
    conversion = services.conversion
    return {
        "item_index": services.content.version,
        "cf": services.recommender.cf.version,
        "ranker": services.recommender.ranker.version,
        "conversion": conversion.version if conversion is not None else None,
        "segments": services.segments.version,
    }


async def refresh_erasures(services: Services) -> int:
    """Apply the erasures other processes logged since the last look (one poll); returns how
    many. Reading the log is blocking I/O (a thread); the cache tiers run on the loop."""
    found = await in_thread(services.privacy.sync_erasures)
    services.privacy.apply_erasures(found)
    return len(found)


async def poll_erasures(services: Services, interval_s: float) -> None:
    """Background task: :func:`refresh_erasures` every ``interval_s`` (``erasure_poll_s``), so
    an erasure by ``tailor forget`` or another gateway reaches this one within that bound."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await refresh_erasures(services)
        except Exception:  # keep polling: the next look reads from the same cursor
            log.exception("erasure poll failed")


def train_cf(
    services: Services,
    stores: ModelStores,
    *,
    config: CFConfig | None = None,
    tune_budget_s: float | None = None,
    seed: int = 0,
) -> tuple[str, dict[str, Any]]:
    """Tune and fit a CF model on the whole event log, write it (with the blend weights tuned
    for it) as a new version and serve it. ``config`` overrides the configured CF settings,
    ``tune_budget_s`` the tuning budget (0: no tuning)."""
    content = services.content if services.content.ready else None
    version, info, model, weights = fit_cf(
        services.store.iter_events(),
        config or stores.cf_config,
        services.profile_config,
        stores.cf,
        training=CFTraining(
            tune_budget_s=stores.tune_budget_s if tune_budget_s is None else tune_budget_s,
            seed=seed,
            half_life_s=services.trending.half_life_s,
            configured_weights=stores.configured_weights,
        ),
        content=content,
    )
    factors = history_factors(info, services.profile_config.weights)
    services.recommender.cf.swap(model, version, weights, factors)
    return version, info


def train_ranker(
    services: Services,
    stores: ModelStores,
    *,
    budget_s: float | None = None,
    seed: int = 0,
    force: bool = False,
) -> tuple[str | None, dict[str, Any]]:
    """Learn a ranker from a time split of the event log over the serving CF model, item
    index and segments; write and serve it when it orders the validation users better than
    the blend (or ``force``). Returns the version (None: not published) and the summary."""
    version = stores.cf.latest()
    if version is None:
        raise RecommendError("no CF model to rank the candidates of: run `tailor train cf` first")
    load_cf_latest(services, stores)
    services.segments.load_latest()
    cf = services.recommender.cf.model
    assert cf is not None
    trained = stores.cf.trained_info(version)
    curve = str(trained.get("rating_curve", "linear"))
    rec = services.recommender
    parts = ServingParts(
        cf=cf,
        rating_curve=curve,
        event_weights=trained.get("event_weights") or None,
        content=services.content,
        trending=services.trending,
        item_of=services.catalog.item,
        all_items=services.catalog.all_items,
        weights=rec.blend_weights(),
        exclude_types=tuple(rec.exclude_types),
        segment_of=services.segment_of if services.segments.model is not None else None,
    )
    training = RankerTraining()
    if budget_s is not None:
        training = dataclasses.replace(
            training, params=dataclasses.replace(training.params, budget_s=budget_s)
        )
    ranker = fit_ranker(
        services.store.iter_events(), parts, services.profile_config, training, seed=seed
    )
    info = dict(ranker.info)
    if not (info.get("beats_blend") or force):
        return None, info
    version = stores.ranker.write(ranker)
    services.recommender.ranker.swap(dataclasses.replace(ranker, version=version))
    return version, info


def load_ranker_latest(services: Services, stores: ModelStores) -> bool:
    """Serve the newest ranker version (a broken or outdated one is logged and skipped)."""
    slot = services.recommender.ranker
    version = stores.ranker.latest()
    if version is None or version == slot.version:
        return False
    try:
        ranker: Ranker = stores.ranker.load(version)
    except ArtifactError as exc:
        log.warning("ranker %s not usable: %s", version, exc)
        return False
    slot.swap(ranker)
    log.info("serving ranker %s", version)
    return True


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
    try:
        trained = stores.cf.trained_info(version)
    except (OSError, ValueError) as exc:
        log.warning("CF model %s: no readable training summary (%s)", version, exc)
        trained = {}
    factors = history_factors(trained, services.profile_config.weights)
    slot.swap(stores.cf.load(version), version, weights, factors)
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
    # Training imports scikit-learn; a serving gateway that never trains does not load it.
    from recommend.conversion import train_conversion

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

"""Model wiring: build the content service from settings, load or build the item index, train and
load the CF and conversion models, and poll for new artifact versions and newly imported items
while the gateway runs.

On disk, under ``data_dir/models``::

    cf/<version>/            a CF model (recommend.model layout) + trained.json
    cf/<version>/weights.json   blend weights tuned for that version (`tailor evaluate --tune`)
    conversion/v000001/      conversion propensity versions (profiles.conversion layout)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embeddings import (
    CachedEncoder,
    EmbeddingCache,
    EmbeddingError,
    Encoder,
    HashingEncoder,
    IndexStore,
    SentenceTransformerEncoder,
)
from gateway.settings import Settings, SettingsError
from profiles.conversion import ConversionModelStore, train_conversion
from profiles.state import ProfileState
from profiles.types import ConversionModelNotFound
from recommend.cf import choose_cf_model
from recommend.content import ContentService
from recommend.engine import DEFAULT_WEIGHTS, STRATEGIES
from recommend.interactions import InteractionMatrix
from recommend.model import load_model
from recommend.types import CFConfig, RecommendError
from resolvers.context import Services

CF_KINDS = ("auto", "ease", "knn", "als")
WEIGHTS_FILE = "weights.json"

log = logging.getLogger("tailor.models")


def encoder_factory(settings: Settings) -> Callable[[], Encoder]:
    """A zero-argument factory (the model loads lazily, off the request path)."""
    if settings.encoder not in ("minilm", "hashing"):
        raise SettingsError(
            f"setting 'encoder' must be 'minilm' or 'hashing', got {settings.encoder!r}"
        )

    def make() -> Encoder:
        if settings.encoder == "hashing":
            return HashingEncoder(384)
        base = SentenceTransformerEncoder(settings.model_path)
        return CachedEncoder(base, EmbeddingCache(settings.data_dir / "embeddings.db"))

    return make


def build_content(settings: Settings) -> ContentService:
    return ContentService(
        encoder_factory(settings),
        IndexStore(settings.data_dir / "index"),
        template=settings.item_text_template,
        hnsw_threshold=settings.hnsw_threshold,
        hnsw_m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        ef_search=settings.hnsw_ef_search,
        half_life_days=settings.user_vector_half_life_days,
    )


def ensure_index(services: Services, *, show_progress: bool = False) -> str | None:
    """Serve the newest stored index; build one when the catalog has items but no index exists."""
    content = services.content
    try:
        if content.load_latest() or content.ready:
            services.extras.setdefault("changed_items", set()).update(catch_up_items(services))
            return content.version
    except EmbeddingError as exc:
        log.warning("stored index not usable (%s); rebuilding", exc)
    items = services.catalog.all_items()
    if not items:
        return None
    return content.build(items, show_progress=show_progress)


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


async def poll_models(services: Services, settings: Settings) -> None:
    """Background task: swap in new model versions and add new items, every ``model_poll_s``."""
    while True:
        await asyncio.sleep(settings.model_poll_s)
        try:
            swapped = await asyncio.to_thread(refresh_models, services, settings)
        except Exception:  # keep polling; the serving model stays as it is
            log.exception("model poll failed")
            continue
        # Cached answers built on what changed are dropped (on the loop: the caches are not
        # thread-safe).
        edge = services.extras.get("edge")
        changed = services.extras.pop("changed_items", set())
        if edge is not None:
            if changed:
                edge.items_changed(sorted(changed))
            if swapped:
                edge.models_swapped()


# ---------------------------------------------------------------------- collaborative filtering
def _versions(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file()
    )


def cf_config(settings: Settings, kind: str | None = None) -> CFConfig:
    """The CF settings (``kind`` overrides ``settings.cf_kind``)."""
    chosen = kind or settings.cf_kind
    if chosen not in CF_KINDS:
        raise SettingsError(f"setting 'cf_kind' must be one of {CF_KINDS}, got {chosen!r}")
    return CFConfig(kind=chosen, ease_max_items=settings.cf_ease_max_items)  # type: ignore[arg-type]


def blend_weights(settings: Settings) -> dict[str, float]:
    """Configured blend weights: the defaults, overridden source by source by the setting."""
    unknown = set(settings.recommend_weights) - set(DEFAULT_WEIGHTS)
    if unknown:
        raise SettingsError(
            f"setting 'recommend_weights' has unknown sources {sorted(unknown)}; "
            f"known: {sorted(DEFAULT_WEIGHTS)}"
        )
    return {**DEFAULT_WEIGHTS, **settings.recommend_weights}


def interaction_matrix(services: Services) -> InteractionMatrix:
    """The whole event log as a user x item matrix (event weights from the profile config)."""
    weights = services.profile_config
    rows = (
        (ev.profile_key, ev.item_id, ProfileState.event_weight(ev, weights), ev.ts)
        for ev in services.store.iter_events()
        if ev.item_id and ev.type != "identify"
    )
    return InteractionMatrix.from_rows(rows)


def train_cf(
    services: Services, settings: Settings, *, kind: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Fit a CF model on the interaction log, write it as a new version and swap it in."""
    started = time.time()
    config = cf_config(settings, kind)
    matrix = interaction_matrix(services)
    if matrix.n_items == 0:
        raise RecommendError("no interactions to train on: import events first")
    model = choose_cf_model(matrix.n_items, config)
    model.fit(matrix)
    root = settings.data_dir / "models" / "cf"
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tmp = root / f".tmp-{version}"
    model.save(tmp)
    (tmp / "trained.json").write_text(
        json.dumps(
            {
                "version": version,
                "kind": model.kind,
                "users": matrix.n_users,
                "items": matrix.n_items,
                "interactions": int(matrix.matrix.nnz),
                "trained_at": datetime.now(UTC).isoformat(),
                "seconds": round(time.time() - started, 2),
            },
            indent=2,
        )
    )
    os.replace(tmp, root / version)
    for old in _versions(root)[:-3]:
        shutil.rmtree(root / old, ignore_errors=True)
    services.recommender.cf.swap(model, version)
    info = json.loads((root / version / "trained.json").read_text())
    log.info(
        "trained %s CF model %s on %d interactions in %.1fs",
        model.kind,
        version,
        info["interactions"],
        info["seconds"],
    )
    return version, info


def latest_cf_version(settings: Settings) -> str | None:
    versions = _versions(settings.data_dir / "models" / "cf")
    return versions[-1] if versions else None


def read_tuned_weights(settings: Settings, version: str) -> dict[str, float] | None:
    """The weights tuned for a CF version, or None (none saved, or unreadable: logged)."""
    path = settings.data_dir / "models" / "cf" / version / WEIGHTS_FILE
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


def save_tuned_weights(
    settings: Settings, weights: dict[str, float], info: dict[str, Any], version: str | None = None
) -> Path:
    """Write tuned blend weights next to a CF version (default: the newest); returns the file.

    Sources the tuner did not see (e.g. ``context``, which needs a viewed item) keep their
    configured weight, scaled like the tuned ones, so the saved file is a complete weight map.
    """
    version = version or latest_cf_version(settings)
    if version is None:
        raise RecommendError(
            "no CF model version to attach weights to: run `tailor train cf` first"
        )
    root = settings.data_dir / "models" / "cf" / version
    if not (root / "manifest.json").is_file():
        raise RecommendError(f"no CF model version {version!r}")
    configured = blend_weights(settings)
    tuned_total = sum(configured[name] for name in weights if name in configured) or 1.0
    scale = sum(weights.values()) / tuned_total
    complete = {name: round(w * scale, 6) for name, w in configured.items()}
    complete.update(weights)
    tmp = root / f".{WEIGHTS_FILE}.tmp"
    tmp.write_text(
        json.dumps({"weights": complete, **info}, indent=2, sort_keys=True), encoding="utf-8"
    )
    os.replace(tmp, root / WEIGHTS_FILE)
    return root / WEIGHTS_FILE


def load_cf_latest(services: Services, settings: Settings) -> bool:
    """Serve the newest CF version (with its tuned weights); also picks up weights tuned later."""
    slot = services.recommender.cf
    version = latest_cf_version(settings)
    if version is None:
        return False
    weights = read_tuned_weights(settings, version)
    if version == slot.version:
        if weights is not None and weights != slot.weights:
            slot.set_weights(version, weights)
            log.info("CF model %s: serving tuned blend weights %s", version, weights)
        return False
    slot.swap(load_model(settings.data_dir / "models" / "cf" / version), version, weights)
    log.info("serving CF model %s%s", version, " with tuned blend weights" if weights else "")
    return True


# ---------------------------------------------------------------------- conversion propensity
def conversion_store(settings: Settings) -> ConversionModelStore:
    return ConversionModelStore(settings.data_dir / "models" / "conversion")


def train_conversion_model(
    services: Services, settings: Settings, *, seed: int = 0
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
        horizon_days=settings.conversion_horizon_days,
        config=services.profile_config,
        categories=services.catalog.categories,
        now=end,
        n_cutoffs=settings.conversion_cutoffs,
        seed=seed,
    )
    version = conversion_store(settings).write(model)
    services.conversion = model
    return version, metrics


def load_conversion_latest(services: Services, settings: Settings) -> bool:
    store = conversion_store(settings)
    versions = store.versions()
    current = services.conversion.version if services.conversion is not None else None
    if not versions or versions[-1] == current:
        return False
    try:
        services.conversion = store.load(versions[-1])
    except ConversionModelNotFound as exc:
        log.warning("conversion model %s not usable: %s", versions[-1], exc)
        return False
    log.info("serving conversion model %s", versions[-1])
    return True


def refresh_models(services: Services, settings: Settings) -> bool:
    """Everything the poller does once: index versions, new items, CF versions (and their tuned
    weights), conversion versions, segment versions. True when any model version was swapped."""
    index_before = services.content.version
    ensure_index(services)
    swapped = services.content.version != index_before
    swapped = bool(load_cf_latest(services, settings)) or swapped
    swapped = bool(load_conversion_latest(services, settings)) or swapped
    if services.segments is not None:
        swapped = bool(services.segments.load_latest()) or swapped
    return swapped

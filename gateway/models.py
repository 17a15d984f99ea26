"""Model wiring: build the content service from settings, load or build the item index, and poll
for new artifact versions and newly imported items while the gateway runs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
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
from profiles.state import ProfileState
from recommend.cf import choose_cf_model
from recommend.content import ContentService
from recommend.interactions import InteractionMatrix
from recommend.model import load_model
from recommend.types import CFConfig, RecommendError
from resolvers.context import Services

log = logging.getLogger("tailor.models")


def encoder_factory(settings: Settings):  # type: ignore[no-untyped-def]
    """A zero-argument factory (the model loads lazily, off the request path)."""
    if settings.encoder not in ("minilm", "hashing"):
        raise SettingsError(f"setting 'encoder' must be 'minilm' or 'hashing', got {settings.encoder!r}")

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
            catch_up_items(services)
            return content.version
    except EmbeddingError as exc:
        log.warning("stored index not usable (%s); rebuilding", exc)
    items = services.catalog.all_items()
    if not items:
        return None
    return content.build(items, show_progress=show_progress)


def catch_up_items(services: Services) -> int:
    """Add items written since the serving index was built (imports by other processes)."""
    content = services.content
    fresh = services.store.items_updated_since(content.loaded_at)
    if not fresh:
        return 0
    services.catalog.update(fresh)
    content.loaded_at = max(it.updated_at for it in fresh)
    added = content.add_items(fresh)
    log.info("added %d new or changed items to the live index", added)
    return added


async def poll_models(services: Services, settings: Settings) -> None:
    """Background task: swap in new model versions and add new items, every ``model_poll_s``."""
    while True:
        await asyncio.sleep(settings.model_poll_s)
        try:
            await asyncio.to_thread(refresh_models, services, settings)
        except Exception:  # keep polling; the serving model stays as it is
            log.exception("model poll failed")


# ---------------------------------------------------------------------- collaborative filtering
def _versions(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())


def train_cf(services: Services, settings: Settings, *, kind: str = "auto") -> tuple[str, dict[str, Any]]:
    """Fit a CF model on the interaction log, write it as a new version and swap it in."""
    started = time.time()
    weights = services.profile_config
    rows = (
        (ev.profile_key, ev.item_id, ProfileState.event_weight(ev, weights), ev.ts)
        for ev in services.store.iter_events()
        if ev.item_id and ev.type != "identify"
    )
    matrix = InteractionMatrix.from_rows(rows)
    if matrix.n_items == 0:
        raise RecommendError("no interactions to train on: import events first")
    model = choose_cf_model(matrix.n_items, CFConfig(kind=kind))  # type: ignore[arg-type]
    model.fit(matrix)
    root = settings.data_dir / "models" / "cf"
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tmp = root / f".tmp-{version}"
    model.save(tmp)
    (tmp / "trained.json").write_text(json.dumps({
        "version": version, "kind": model.kind, "users": matrix.n_users, "items": matrix.n_items,
        "interactions": int(matrix.matrix.nnz), "trained_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.time() - started, 2),
    }, indent=2))
    os.replace(tmp, root / version)
    for old in _versions(root)[:-3]:
        shutil.rmtree(root / old, ignore_errors=True)
    services.recommender.cf.swap(model, version)
    info = json.loads((root / version / "trained.json").read_text())
    log.info("trained %s CF model %s on %d interactions in %.1fs", model.kind, version,
             info["interactions"], info["seconds"])
    return version, info


def load_cf_latest(services: Services, settings: Settings) -> bool:
    root = settings.data_dir / "models" / "cf"
    versions = _versions(root)
    if not versions or versions[-1] == services.recommender.cf.version:
        return False
    services.recommender.cf.swap(load_model(root / versions[-1]), versions[-1])
    log.info("serving CF model %s", versions[-1])
    return True


def refresh_models(services: Services, settings: Settings) -> None:
    """Everything the poller does once: index versions, new items, CF versions."""
    ensure_index(services)
    load_cf_latest(services, settings)

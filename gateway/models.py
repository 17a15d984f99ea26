"""Model wiring: build the content service from settings, load or build the item index, and poll
for new artifact versions and newly imported items while the gateway runs."""

from __future__ import annotations

import asyncio
import logging

from embeddings import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    EmbeddingError,
    HashingEncoder,
    IndexStore,
    SentenceTransformerEncoder,
)
from gateway.settings import Settings, SettingsError
from recommend.content import ContentService
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


async def poll_models(services: Services, interval_s: float) -> None:
    """Background task: swap in new index versions and add new items, every ``interval_s``."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await asyncio.to_thread(ensure_index, services)
        except Exception:  # keep polling; the serving model stays as it is
            log.exception("model poll failed")

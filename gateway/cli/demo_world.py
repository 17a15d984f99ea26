"""``tailor demo``: generate the synthetic fashion shop and load it through the public import paths.

The world is generated into ``<data_dir>/demo/`` (items.jsonl, users.jsonl, events.ndjson and the
persona ground truth) and loaded with the same importers a user runs (`tailor import ...`).
A data dir that already holds a demo world with the same parameters is reused as it is.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from catalog.importer import import_items
from demo.world import generate_world
from gateway.models import ensure_index, train_cf, train_conversion_model
from gateway.settings import Settings
from gateway.wiring import ModelStores, build_services, model_stores
from profiles.imports import import_events, import_users
from profiles.types import InsufficientTrainingData
from resolvers.context import Services

ProgressFactory = Callable[
    [str, int | None], contextlib.AbstractContextManager[Callable[[int], None]]
]


@contextlib.contextmanager
def _silent(_label: str, _total: int | None = None) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


def load_demo_world(
    settings: Settings,
    *,
    seed: int = 42,
    n_users: int = 2000,
    n_items: int = 5000,
    progress: ProgressFactory = _silent,
    train_models: bool = True,
) -> dict[str, Any]:
    """Generate (once) and import the demo world; returns counts and a sample user id.

    ``train_models=False`` leaves the item index, the CF and the conversion models to
    :func:`train_demo_models` (``tailor demo`` runs it after the server is up: answers fall back
    to trending and segment popularity, without content similarity and search, until the running
    gateway's model poller picks the new versions up)."""
    world_dir = settings.data_dir / "demo"
    params = json.dumps({"seed": seed, "users": n_users, "items": n_items}, sort_keys=True)
    services = build_services(settings, role="demo")
    stores = model_stores(settings)
    try:
        store = services.store
        if store.get_meta("demo_world") != params:
            world_dir.mkdir(parents=True, exist_ok=True)
            generate_world(world_dir, seed=seed, n_users=n_users, n_items=n_items)
            with progress("import items", n_items) as advance:
                import_items(store, world_dir / "items.jsonl", progress=advance)
            with progress("import users", n_users) as advance:
                import_users(store, world_dir / "users.jsonl", now=time.time(), progress=advance)
            services.catalog.update(store.iter_items())
            with progress("import events", _lines(world_dir / "events.ndjson")) as advance:
                summary = import_events(
                    services.ingest, world_dir / "events.ndjson", progress=advance
                )
            if summary.rejected:
                raise RuntimeError(f"demo events rejected: {summary.rejected[:3]}")
            store.set_meta("demo_world", params)
        if not services.segments.models.versions():
            with progress("train segments", None):
                services.segments.train()
        conversion = _train_missing(services, stores, progress) if train_models else None
        personas = json.loads((world_dir / "personas.json").read_text())
        sample = next((u for u, p in sorted(personas.items()) if p == "high_value_loyalist"), None)
        return {
            "items": store.count_items(),
            "users": store.count_users(),
            "events": store.count_events(),
            "sample_user": sample or sorted(personas)[0],
            "world_dir": world_dir,
            "conversion": conversion,  # holdout metrics when trained now
        }
    finally:
        services.ingest.stop()  # the stream's connection, if the import announced on it
        services.store.close()


def _train_missing(
    services: Services, stores: ModelStores, progress: ProgressFactory
) -> dict[str, float] | None:
    """Build the item index and train the CF and conversion models that have no stored version
    yet (the index first: the CF blend tuning weighs content similarity); returns the
    conversion model's holdout metrics when it was trained now."""
    if services.content.store.latest() is None:
        with progress("encode items", len(services.catalog)) as advance:
            ensure_index(services, progress=advance)
    if not stores.cf.versions():
        with progress("train collaborative filtering", None):
            train_cf(services, stores)
    conversion = None
    if not stores.conversion.versions():
        # A tiny world (tests) may hold too few weeks for the temporal cutoffs: the demo
        # then serves without conversionScore rather than failing.
        with (
            progress("train conversion propensity", None),
            contextlib.suppress(InsufficientTrainingData),
        ):
            conversion = train_conversion_model(services, stores)[1]
    return conversion


def train_demo_models(settings: Settings) -> dict[str, float] | None:
    """Build the demo's missing item index and train its missing CF and conversion models on
    their own store connection (``tailor demo`` runs this in a background thread once the
    server is up, which serves with ``index_build_on_start`` off meanwhile)."""
    services = build_services(settings)
    try:
        return _train_missing(services, model_stores(settings), _silent)
    finally:
        services.store.close()


def _lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)

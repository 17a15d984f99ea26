"""`tailor demo` serves before its item index is built and its CF and conversion models are
trained; they land later, and the serving gateway (``index_build_on_start`` off) never builds one."""

from __future__ import annotations

from pathlib import Path

from gateway.cli.demo_world import load_demo_world, train_demo_models
from gateway.models import refresh_models
from gateway.settings import load_settings, replace
from gateway.wiring import build_services, model_stores
from tests.conftest import SECRET


def test_models_train_after_loading_and_a_running_gateway_picks_them_up(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        environ={}, data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing"
    )
    load_demo_world(settings, seed=7, n_users=80, n_items=300, train_models=False)
    assert not model_stores(settings).cf.versions()  # nothing trained before serving

    gateway = replace(settings, index_build_on_start=False)  # what `tailor demo` serves with
    stores = model_stores(gateway)
    serving = build_services(gateway)  # what the running gateway holds
    try:
        refresh_models(serving, stores)
        assert serving.recommender.cf.version is None
        assert serving.content.version is None  # the gateway did not build one itself
        assert serving.content.store.latest() is None
        train_demo_models(settings)
        assert stores.cf.versions()
        assert serving.content.store.latest() is not None
        assert refresh_models(serving, stores).swapped  # the poller's next look
        assert serving.recommender.cf.version == stores.cf.latest()
        assert serving.content.version == serving.content.store.latest()
        assert len(serving.content.holder.snapshot()[0]) == 300  # type: ignore[arg-type]
    finally:
        serving.store.close()
    assert train_demo_models(settings) is None  # nothing left to train: a no-op

"""`tailor train cf` tunes, `tailor train ranker` learns and publishes, the gateway hot-swaps both,
and `tailor evaluate` puts the default answer beside every single strategy (both splits, cold
users, HTML) — on the small demo world the other CLI tests use."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import demo.world as demo_world_module
from gateway.app import create_app
from gateway.cli.demo_world import load_demo_world
from gateway.cli.main import main
from gateway.models import refresh_models
from gateway.security.auth import issue_token
from gateway.settings import Settings, load_settings
from gateway.wiring import build_services, model_stores
from recommend.engine import DEFAULT_WEIGHTS
from tests.conftest import SECRET

# Where the test world ends. Fixed, so the test is reproducible: NDCG on 80 users moves with the
# hour the world ends at. 07 h is the hour where leave-last-n's default once came 0.005 below the
# best single strategy (the tuned blend was the default: the ranker's gain was judged on a fifth
# of the users). Measured since the ranker is judged on every fold of users: the default (the
# ranker) beats every single strategy on both splits with worlds ending at 00, 07, 12 and 18 h
# (leave-last-n at 07 h: 0.469 vs cf(tuned) 0.410).
WORLD_END = datetime(2026, 11, 30, 7, tzinfo=UTC)


def demo_settings(data_dir: Path) -> Settings:
    return load_settings(environ={}, data_dir=data_dir, jwt_secret=SECRET, encoder="hashing")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object], str]:
    """The demo world with a CF model trained by the CLI, and the CLI's output."""
    data_dir = tmp_path_factory.mktemp("ranked") / "var"
    mp = pytest.MonkeyPatch()
    # The world ends at a fixed hour: by default it ends at the current hour, and its events
    # then fall into different UTC days (profile day buckets, time splits) depending on when
    # the test runs — on 80 users that moves NDCG by more than the margins asserted below.
    mp.setattr(demo_world_module, "_default_end", lambda: WORLD_END)
    try:
        info = load_demo_world(demo_settings(data_dir), seed=7, n_users=80, n_items=300)
    finally:
        mp.undo()
    mp.setenv("TAILOR_ENCODER", "hashing")
    mp.setenv("TAILOR_JWT_SECRET", SECRET)
    try:
        from contextlib import redirect_stdout
        from io import StringIO

        out = StringIO()
        with redirect_stdout(out):
            assert main(["train", "cf", "--budget", "20", "--data-dir", str(data_dir)]) == 0
            assert main(["train", "ranker", "--data-dir", str(data_dir)]) == 0
    finally:
        mp.undo()
    return data_dir, info, out.getvalue()


@pytest.fixture
def world(
    trained: tuple[Path, dict[str, object], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    data_dir = tmp_path / "var"
    shutil.copytree(trained[0], data_dir)
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    return data_dir


def test_train_cf_tunes_and_the_gateway_serves_the_tuned_weights(
    trained: tuple[Path, dict[str, object], str],
) -> None:
    data_dir, _info, out = trained
    assert re.search(r"tuned on a validation split \(\d+ trials", out), out
    assert "blend weights tuned: validation NDCG@10" in out
    newest = sorted((data_dir / "models" / "cf").iterdir())[-1]
    doc = json.loads((newest / "trained.json").read_text())
    chosen = doc["tuning"]["chosen"]
    searched = {
        "ease": {"ease_session_s", "ease_lambda"},
        "als": {"als_factors", "als_regularization"},
    }
    assert set(chosen) - {"event_weights"} == {"kind", "rating_curve", *searched[chosen["kind"]]}
    assert doc["kind"] == chosen["kind"]
    assert doc["tuning"]["validation"]["split"] == "random per user"
    weights = json.loads((newest / "weights.json").read_text())["weights"]
    services = build_services(demo_settings(data_dir))
    try:
        refresh_models(services, model_stores(demo_settings(data_dir)))
        assert services.recommender.blend_weights() == weights != DEFAULT_WEIGHTS
    finally:
        services.store.close()


def test_train_ranker_publishes_a_version_the_gateway_serves_and_swaps(
    trained: tuple[Path, dict[str, object], str], world: Path
) -> None:
    _data_dir, _info, out = trained
    m = re.search(r"validation NDCG@10 on \d+ held-out users: ranker (\S+)  blend (\S+)", out)
    assert m and float(m[1]) > float(m[2]), out
    assert (world / "models" / "ranker" / "v000001" / "manifest.json").is_file()
    settings, stores = demo_settings(world), model_stores(demo_settings(world))
    services = build_services(settings)
    try:
        refresh_models(services, stores)
        slot = services.recommender.ranker
        assert slot.version == "v000001" and slot.model is not None
        # A newer version (here: forced, whatever its validation) is picked up by the poller.
        assert main(["train", "ranker", "--force", "--seed", "1", "--data-dir", str(world)]) == 0
        assert refresh_models(services, stores).swapped and slot.version == "v000002"
        assert not refresh_models(services, stores).swapped
    finally:
        services.store.close()


async def test_me_recommendations_are_ordered_by_the_ranker(
    trained: tuple[Path, dict[str, object], str], world: Path
) -> None:
    sample = str(trained[1]["sample_user"])
    app = create_app(demo_settings(world))
    query = "{ me { recommendations(first: 10) { item { id } score source reason } } }"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        services = app.state.services
        assert services.recommender.ranker.version == "v000001"
        r = await client.post(
            "/graphql",
            json={"query": query},
            headers={"authorization": f"Bearer {issue_token(SECRET, sample)}"},
        )
        recs = r.json()["data"]["me"]["recommendations"]
        assert len(recs) == 10 and len({x["item"]["id"] for x in recs}) == 10
        assert all(0.0 < x["score"] < 1.0 for x in recs)
        assert [x["score"] for x in recs] == sorted((x["score"] for x in recs), reverse=True)
        assert {x["source"] for x in recs} <= {"cf", "content", "segment", "trending"}
        reasons = {"cf": "Because you", "content": "Because you", "segment": "Popular with"}
        for x in recs:
            assert x["reason"].startswith(reasons.get(x["source"], "Trending")), x


@pytest.mark.slow
def test_evaluate_puts_the_default_answer_beside_every_strategy(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_html = tmp_path / "eval.json", tmp_path / "eval.html"
    args = ["evaluate", "--data", "store", "--json", str(out_json), "--html", str(out_html)]
    assert main([*args, "--data-dir", str(world)]) == 0  # the store has a ranker: included
    text = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    assert [s["split"] for s in doc["splits"]] == ["random", "leave-last-n"]
    singles = ("popularity", "ease", "knn", "als", "trending", "content", "cf(tuned)")
    for split in doc["splits"]:
        ndcg = {r["strategy"]: r["ndcg"] for r in split["rows"]}
        assert {"default", "ranker", "blend(tuned)", *singles} <= set(ndcg)
        # The ranker is the default when it beat the blend beyond noise on its validation users
        # (a handful in this small world); either way the default beats every single strategy.
        assert split["pipeline"]["default"] in ("ranker", "blend(tuned)")
        assert ndcg["default"] > max(ndcg[s] for s in singles), split["split"]
        assert ndcg["ranker"] > ndcg["blend(tuned)"]
        cold = {r["strategy"]: r for r in split["cold_rows"]}
        assert cold["default"]["users"] >= 5
        assert cold["default"]["ndcg"] > cold["trending"]["ndcg"]
        for row in split["rows"]:
            assert {"ndcg", "recall", "map", "coverage", "novelty"} <= set(row)
    assert "== split leave-last-n ==" in text and "cold users (1-3 training interactions)" in text
    assert re.search(r"default answer \((ranker|blend\(tuned\))\): NDCG@10 \S+ vs the best", text)
    page = out_html.read_text()
    assert page.startswith("<!doctype html>") and page.count("<table>") == 4
    assert "Cold users (1 to 3 training interactions)" in page and 'class="default"' in page

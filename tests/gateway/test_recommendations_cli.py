"""`tailor train conversion`, `tailor evaluate` and User.conversionScore on the demo world."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.cli.demo_world import load_demo_world
from gateway.cli.main import main
from gateway.cli.train import evaluation_inputs
from gateway.security.auth import issue_token
from gateway.settings import Settings, load_settings
from recommend.offline.harness import evaluate
from tests.conftest import SECRET, Gateway, movielens_dir


def demo_settings(data_dir: Path) -> Settings:
    return load_settings(environ={}, data_dir=data_dir, jwt_secret=SECRET, encoder="hashing")


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    data_dir = tmp_path_factory.mktemp("demo") / "var"
    info = load_demo_world(demo_settings(data_dir), seed=7, n_users=80, n_items=300)
    return data_dir, info


@pytest.fixture
def world(
    demo_world: tuple[Path, dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, object]]:
    """A private copy of the demo data dir, and the CLI's environment pointing at it."""
    data_dir = tmp_path / "var"
    shutil.copytree(demo_world[0], data_dir)
    monkeypatch.setenv("TAILOR_ENCODER", "hashing")
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    return data_dir, demo_world[1]


async def conversion_scores(data_dir: Path, users: list[str]) -> list[float | None]:
    app = create_app(demo_settings(data_dir))
    out = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        for user in users:
            r = await client.post(
                "/graphql",
                json={"query": "{ me { conversionScore } }"},
                headers={"authorization": f"Bearer {issue_token(SECRET, user)}"},
            )
            out.append(r.json()["data"]["me"]["conversionScore"])
    return out


async def test_train_conversion_prints_holdout_metrics_and_is_served(
    world: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, info = world
    conversion = info["conversion"]
    assert isinstance(conversion, dict) and conversion["roc_auc"] > 0.6  # the demo trained one
    assert main(["train", "conversion", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    m = re.search(
        r"holdout: ROC-AUC (\S+)  PR-AUC (\S+) \(base rate (\S+)\)  Brier (\S+) \(base-rate Brier (\S+)\)",
        out,
    )
    assert m, out
    roc, pr, base, brier, brier_base = (float(x) for x in m.groups())
    assert roc > 0.6 and pr > base and brier < brier_base
    versions = sorted(p.name for p in (data_dir / "models" / "conversion").iterdir())
    assert versions == ["v000001", "v000002"]
    manifest = json.loads(
        (data_dir / "models" / "conversion" / "v000002" / "manifest.json").read_text()
    )
    assert manifest["horizon_days"] == 7.0

    sample = str(info["sample_user"])
    score, unknown = await conversion_scores(data_dir, [sample, "nobody-here"])
    assert score is not None and 0.0 <= score <= 1.0
    assert unknown is None  # no profile


async def test_conversion_score_is_null_without_a_model(gateway: Gateway) -> None:
    r = await gateway.gql(
        """mutation { track(events: [{messageId: "m1", type: search, properties: {query: "x"}}]) { accepted } }""",
        user="u1",
    )
    assert r.json()["data"]["track"]["accepted"] == 1
    r = await gateway.gql("{ me { conversionScore profile { events } } }", user="u1")
    assert r.json()["data"]["me"] == {"conversionScore": None, "profile": {"events": 1}}


def test_train_conversion_on_a_short_log_fails_cleanly(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    assert main(["train", "conversion", "--data-dir", str(gateway.data_dir)]) == 1
    assert "converters and non-converters" in capsys.readouterr().err.replace("\n", " ")


def test_evaluate_store_data_side_by_side_and_tuned_weights_are_served(
    world: tuple[Path, dict[str, object]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir, _ = world
    out_json = tmp_path / "eval.json"
    args = [
        "evaluate",
        "--data",
        "store",
        "--tune",
        "--json",
        str(out_json),
        "--data-dir",
        str(data_dir),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    names = [row["strategy"] for row in doc["rows"]]
    assert names == [
        "popularity",
        "ease",
        "knn",
        "als",
        "trending",
        "content",
        "hybrid",
        "hybrid(tuned)",
    ]
    for name in names:
        assert re.search(rf"^{re.escape(name)}\s+\d+\s+0\.\d{{4}}", table, re.M), name
    row = {r["strategy"]: r for r in doc["rows"]}
    assert row["ease"]["ndcg"] > row["popularity"]["ndcg"]
    assert all(
        0.0 <= r[m] <= 1.0
        for r in doc["rows"]
        for m in ("precision", "recall", "ndcg", "hit_rate", "map")
    )

    tuned = doc["tuned"]
    saved = Path(tuned["saved_to"])
    cf_versions = sorted(p.name for p in (data_dir / "models" / "cf").iterdir())
    assert saved == data_dir / "models" / "cf" / cf_versions[-1] / "weights.json"
    weights = json.loads(saved.read_text())["weights"]
    assert {k: weights[k] for k in tuned["weights"]} == tuned["weights"]
    assert set(weights) == {"cf", "content", "segment", "trending", "context"}

    # The gateway serves the tuned weights with the CF version they belong to...
    from gateway.models import refresh_models
    from gateway.wiring import build_services, model_stores

    services = build_services(demo_settings(data_dir))
    try:
        refresh_models(services, model_stores(demo_settings(data_dir)))
        assert services.recommender.blend_weights() == weights
    finally:
        services.store.close()
    # ...and the next evaluation's hybrid uses them.
    again = evaluate(evaluation_inputs(demo_settings(data_dir), "store"), only=["hybrid"])
    assert again.weights == weights
    assert any("tuned for CF version" in n for n in again.notes)


def test_evaluate_is_deterministic_for_a_seed(world: tuple[Path, dict[str, object]]) -> None:
    data_dir, _ = world
    settings = demo_settings(data_dir)
    # ALS (seeded random init) is the part that could drift; the splits are seeded or exact.
    for split, only in (
        ("random", ["als", "hybrid"]),
        ("temporal", ["als"]),
        ("leave-last-n", ["als"]),
    ):
        a = evaluate(evaluation_inputs(settings, "store"), split=split, seed=3, only=only)
        b = evaluate(evaluation_inputs(settings, "store"), split=split, seed=3, only=only)
        assert a.rows == b.rows, split
        assert [r["strategy"] for r in a.rows] == ["popularity", *only]
        if split == "random":
            als_seed3 = a.rows[1]
    other_seed = evaluate(
        evaluation_inputs(settings, "store"), split="random", seed=4, only=["als"]
    )
    assert other_seed.rows[1] != als_seed3  # another seed: another split and init


@pytest.mark.slow
def test_evaluate_movielens_meets_the_quality_target(tmp_path: Path) -> None:
    """The issue's target through the CLI (the model-level check is in
    tests/recommend/test_quality_movielens.py): the best strategy reaches NDCG@10 >= 0.37 and
    1.8x popularity in the same run."""
    movielens_dir()  # fails (never skips) when the dataset is missing; the CLI reads the same place
    out = tmp_path / "ml.json"
    assert (
        main(
            [
                "evaluate",
                "--data",
                "movielens",
                "--strategies",
                "ease,hybrid",
                "--json",
                str(out),
                "--data-dir",
                str(tmp_path / "var"),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    ndcg = {r["strategy"]: r["ndcg"] for r in doc["rows"]}
    assert set(ndcg) == {"popularity", "ease", "hybrid"}
    assert 0.15 < ndcg["popularity"] < 0.25
    best = max(ndcg["ease"], ndcg["hybrid"])
    assert best >= 0.37 and best >= 1.8 * ndcg["popularity"]

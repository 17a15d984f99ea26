"""End to end on the demo world: a simulated A/B test between the hybrid default and a
deliberately worse arm (trending only), and an A/A test beside it.

The world is generated and imported through the public paths (generator, importers, index,
segments, CF); the gateway serves it over ASGI with the experiments defined in its file. Each
ground-truth user (the generator's hidden taste: preferred categories) asks for
``me { recommendations }`` without naming any variant, and clicks each recommended item with a
known probability: 12% in a preferred category, 1% otherwise, citing the ``recommendationId``
(30% of clicks end in a purchase of the item, for the revenue guardrail).
``tailor experiments report`` must then find the better arm (hybrid) with p < 0.05 and the
right sign, pass the SRM check, and find nothing in the A/A test.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from catalog.importer import import_items
from demo.catalog import generate_items
from demo.people import generate_users
from demo.timefmt import DAY_S, to_epoch
from demo.world import generate_world
from experiments import definitions as defs_file
from experiments.editing import create_experiment
from gateway.app import create_app
from gateway.cli.main import main as tailor
from gateway.models import ensure_index, train_cf
from gateway.settings import load_settings
from gateway.wiring import build_services, model_stores
from profiles.imports import import_events, import_users
from tests.conftest import SECRET, FakeClock

SEED, USERS, ITEMS, DAYS = 11, 300, 500, 60
END = datetime(2026, 1, 1, tzinfo=UTC)
P_LIKED, P_OTHER, P_BUY = 0.12, 0.01, 0.3
RECS = "{ me { recommendations(first: 10) { item { id } recommendationId variant } } }"


def tastes() -> tuple[dict[str, frozenset[str]], dict[str, str], dict[str, float]]:
    """The generator's hidden truth: user id -> preferred categories; item id -> category,
    item id -> price."""
    end_s = to_epoch(END)
    start_s = end_s - DAYS * DAY_S
    items_rng, users_rng, _events = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(SEED).spawn(3)
    )
    items = generate_items(items_rng, ITEMS, start_s, end_s)
    users = generate_users(users_rng, USERS, start_s, end_s)
    category = {it.id: str(it.category) for it in items}
    liked = {u.id: frozenset(str(c) for c in u.categories) for u in users}
    return liked, category, {it.id: it.price for it in items}


def load_world(data_dir: Path) -> Any:
    settings = load_settings(
        environ={},
        data_dir=data_dir,
        jwt_secret=SECRET,
        encoder="hashing",
        experiments_poll_s=0.0,
        rate_limit_per_s=0,
        max_concurrency=0,
    )
    world = generate_world(
        data_dir / "demo", seed=SEED, n_users=USERS, n_items=ITEMS, days=DAYS, end=END
    )
    services = build_services(settings)
    try:
        import_items(services.store, world.items_path)
        import_users(services.store, world.users_path, now=time.time())
        services.catalog.update(services.store.iter_items())
        import_events(services.ingest, world.events_path)
        ensure_index(services)
        services.segments.train()
        train_cf(services, model_stores(settings), tune_budget_s=0)
    finally:
        services.store.close()
    defs = create_experiment(
        defs_file.Definitions(),
        "hybrid-vs-trending",
        [("hybrid", {}), ("trending", {"strategy": "trending"})],
    )
    defs = create_experiment(defs, "a-a", [("a1", {}), ("a2", {})], feature="recommendations.aa")
    defs_file.save(settings.experiments_path, defs)
    return settings


def report(data_dir: Path, key: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert tailor(["experiments", "report", key, "--json", "--data-dir", str(data_dir)]) == 0
    return dict(json.loads(capsys.readouterr().out))


@pytest.mark.slow
async def test_the_report_finds_the_better_arm_and_the_aa_test_finds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "var"
    started = time.perf_counter()
    settings = load_world(data_dir)
    loaded = time.perf_counter() - started
    liked, category, price = tastes()
    rng = np.random.default_rng(SEED)
    app = create_app(settings, clock=FakeClock(to_epoch(END)))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        from gateway.security.auth import issue_token

        for user in sorted(liked):
            auth = {"authorization": f"Bearer {issue_token(SECRET, user)}"}
            r = await client.post("/graphql", json={"query": RECS}, headers=auth)
            body = r.json()
            assert r.status_code == 200 and "errors" not in body, body
            clicks = []
            for k, rec in enumerate(body["data"]["me"]["recommendations"]):
                item = rec["item"]["id"]
                p = P_LIKED if category[item] in liked[user] else P_OTHER
                if rng.random() < p:
                    clicks.append(
                        {
                            "messageId": f"sim-{user}-{k}",
                            "type": "click",
                            "itemId": item,
                            "timestamp": to_epoch(END) + 60,
                            "properties": {"recommendationId": rec["recommendationId"]},
                        }
                    )
                    if rng.random() < P_BUY:  # a click sometimes ends in a purchase
                        clicks.append(
                            {
                                "messageId": f"sim-{user}-{k}-buy",
                                "type": "purchase",
                                "itemId": item,
                                "timestamp": to_epoch(END) + 120,
                                "properties": {
                                    "recommendationId": rec["recommendationId"],
                                    "price": price[item],
                                    "quantity": 1,
                                },
                            }
                        )
            if clicks:
                r = await client.post("/v1/events", json=clicks, headers=auth)
                assert r.status_code == 200, r.text

    served = time.perf_counter() - started - loaded
    ab = report(data_dir, "hybrid-vs-trending", capsys)
    with capsys.disabled():
        print(f"\nworld loaded in {loaded:.1f} s, experiment served in {served:.1f} s")
    with capsys.disabled():  # the figures, for the log (pytest -s shows them)
        print("\nA/B", json.dumps([ab["variants"], ab["comparisons"], ab["srm"]], default=str))
    rows = {v["variant"]: v for v in ab["variants"]}
    # Users refusing personalization get the non-personalized answer and are never exposed.
    assert 250 < rows["hybrid"]["exposed"] + rows["trending"]["exposed"] <= USERS
    assert not ab["srm"]["mismatch"] and ab["srm"]["p_value"] > 0.001
    (cmp,) = ab["comparisons"]
    assert cmp["variant"] == "trending" and cmp["against"] == "hybrid"
    assert rows["trending"]["ctr"] < rows["hybrid"]["ctr"]
    assert cmp["ctr"]["lift"] < 0 and cmp["ctr"]["ci_high"] < 0  # the right sign, CI excludes 0
    assert cmp["ctr"]["p_value"] < 0.05
    assert rows["hybrid"]["revenue_per_user"] > rows["trending"]["revenue_per_user"] > 0
    assert cmp["revenue_per_user_change"] < 0  # the guardrail moves with the worse arm
    assert {a["strategy"] for a in ab["attributions"] if a["variant"] == "trending"} == {"trending"}

    aa = report(data_dir, "a-a", capsys)
    with capsys.disabled():
        print("A/A", json.dumps([aa["variants"], aa["comparisons"], aa["srm"]], default=str))
    (same,) = aa["comparisons"]
    assert same["ctr"]["p_value"] >= 0.05
    assert same["ctr"]["ci_low"] < 0 < same["ctr"]["ci_high"]
    assert not aa["srm"]["mismatch"]

    # The terminal table and the HTML page of the same report.
    page = tmp_path / "report.html"
    code = tailor(
        [
            "experiments",
            "report",
            "hybrid-vs-trending",
            "--html",
            str(page),
            "--data-dir",
            str(data_dir),
        ]
    )
    assert code == 0
    text = page.read_text()
    assert "data:image/png;base64," in text and "hybrid-vs-trending" in text
    assert "<script" not in text and "http" not in text.split("<body>")[1]  # self-contained

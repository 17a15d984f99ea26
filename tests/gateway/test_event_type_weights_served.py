"""The event-type weights `train cf` chose are served: right after training and after a restart
(picked up with the version), the CF strategy folds the user's history in with them."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from catalog.importer import validate_item
from gateway.app import create_app
from gateway.models import train_cf
from gateway.wiring import model_stores
from tests.conftest import NOW, SECRET, FakeClock, Gateway

N_ITEMS = 80
RECS = """query { me { recommendations(first: 10, strategy: CF) { item { id } source } } }"""


def _events() -> list[dict[str, Any]]:
    """Four taste groups click and buy within their group; carts land on random items."""
    rng = random.Random(2)
    out: list[dict[str, Any]] = []
    for u in range(160):
        mine = [f"i{k}" for k in range(u % 4, N_ITEMS, 4)]
        kinds = ["purchase"] * 6 + ["click"] * 6
        rows = list(zip(kinds, rng.sample(mine, 12), strict=True))
        rows += [("add_to_cart", f"i{rng.randrange(N_ITEMS)}") for _ in range(12)]
        for n, (etype, item) in enumerate(rows):
            props = {"price": 20.0, "quantity": 1} if etype in ("purchase", "add_to_cart") else {}
            out.append(
                {
                    "messageId": f"u{u}-{n}",
                    "type": etype,
                    "userId": f"u{u}",
                    "itemId": item,
                    "timestamp": (NOW - 10 * 86_400 + u * 600 + n) * 1000,
                    **({"properties": props} if props else {}),
                }
            )
    return out


async def _open(data_dir: Path, clock: FakeClock) -> tuple[Gateway, Any]:
    app = create_app(data_dir=data_dir, jwt_secret=SECRET, encoder="hashing", clock=clock)
    ctx = app.router.lifespan_context(app)
    await ctx.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t.test")
    return Gateway(client, app, clock, data_dir), ctx


async def _close(gw: Gateway, ctx: Any) -> None:
    await gw.client.aclose()
    await ctx.__aexit__(None, None, None)


async def _cf_answer(gw: Gateway, user: str) -> list[str]:
    r = await gw.gql(RECS, {}, user=user)
    body = r.json()
    assert "errors" not in body, body
    rows = body["data"]["me"]["recommendations"]
    assert {row["source"] for row in rows} == {"cf"}
    return [row["item"]["id"] for row in rows]


async def test_chosen_event_weights_are_served_and_survive_a_restart(tmp_path: Path) -> None:
    data_dir, clock = tmp_path / "var", FakeClock(NOW)
    gw, ctx = await _open(data_dir, clock)
    try:
        rows = [
            {"id": f"i{k}", "title": f"item {k}", "categories": [f"c{k % 4}"]}
            for k in range(N_ITEMS)
        ]
        items = [validate_item(r, NOW - 86_400) for r in rows]
        gw.services.store.upsert_items(items)
        gw.services.catalog.update(items)
        events = _events()
        for lo in range(0, len(events), 1000):
            result = await gw.services.ingest.ingest(events[lo : lo + 1000])
            assert result.count("accepted") == len(result.results)
        _version, info = train_cf(gw.services, model_stores(gw.app.state.settings))
        chosen = info["event_weights"]
        configured = gw.services.profile_config.weights
        # The random carts weigh less against purchases than configured.
        assert (
            chosen["add_to_cart"] / chosen["purchase"]
            < configured["add_to_cart"] / configured["purchase"]
        )
        factors = gw.services.recommender.cf.history_factors
        assert factors == {t: w / configured[t] for t, w in chosen.items()}
        before = await _cf_answer(gw, "u5")
    finally:
        await _close(gw, ctx)

    gw, ctx = await _open(data_dir, clock)
    try:
        slot = gw.services.recommender.cf
        assert slot.history_factors == factors  # picked up with the version on start
        after = await _cf_answer(gw, "u5")
        assert after == before
        # The answer is the model's from the history weighted by the chosen weights.
        history: dict[str, float] = {}
        for ev in events:
            if ev["userId"] == "u5":
                w = chosen.get(ev["type"], configured[ev["type"]])
                history[ev["itemId"]] = history.get(ev["itemId"], 0.0) + w
        want, scores = slot.model.recommend(history, 10, set(history))
        ranked = int((np.asarray(scores) > 0).sum())  # the rest tie at 0
        assert ranked >= 5 and after[:ranked] == want[:ranked]
        assert not set(after) & set(history)
    finally:
        await _close(gw, ctx)

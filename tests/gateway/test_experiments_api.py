"""Flags and experiments through the real ASGI app: `me { flags }`, `me { experiment }`,
recommendations shaped by the caller's variant without passing it, recommendationId and
variant on every result, deduplicated exposures, attribution of the events citing an id, the
visitor's variant kept after `identify`, and definitions reloaded while serving."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.importer import validate_item
from experiments import Subject
from experiments import definitions as defs_file
from experiments.editing import create_experiment, set_flag, stop_experiment
from gateway.app import create_app
from tests.conftest import NOW, SECRET, FakeClock, Gateway, item_rows

ME = """{ me { id
  flags { key value }
  experiment(key: "reco-ab") { key variant }
  recommendations(first: 5) { item { id } source recommendationId variant } } }"""


def definitions() -> defs_file.Definitions:
    defs = create_experiment(
        defs_file.Definitions(),
        "reco-ab",
        [("control", {}), ("trending", {"strategy": "trending", "first": 3})],
    )
    defs = create_experiment(defs, "hero-test", [("old", "v1"), ("new", "v2")], feature="hero")
    return set_flag(defs, "banner", "spring")


def write(path: Path, defs: defs_file.Definitions) -> None:
    defs_file.save(path, defs)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
async def gw(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Gateway]:
    data = tmp_path / "var"
    data.mkdir()
    write(data / "experiments.json", definitions())
    app = create_app(
        data_dir=data,
        jwt_secret=SECRET,
        encoder="hashing",
        clock=clock,
        experiments_poll_s=0.0,
        rate_limit_per_s=0,
        max_concurrency=0,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            g = Gateway(client, app, clock, data)
            items = [validate_item(r, NOW) for r in item_rows(12)]
            g.services.store.upsert_items(items)
            g.services.catalog.update(items)
            yield g


def bearer(g: Gateway, user: str) -> dict[str, str]:
    return {"authorization": f"Bearer {g.token(user)}"}


async def me(g: Gateway, headers: dict[str, str]) -> dict[str, Any]:
    r = await g.client.post("/graphql", json={"query": ME}, headers=headers)
    body = r.json()
    assert r.status_code == 200 and "errors" not in body, body
    return dict(body["data"]["me"])


async def test_variants_shape_recommendations_and_are_exposed_once(gw: Gateway) -> None:
    store = gw.services.store
    seen: dict[str, str] = {}
    for i in range(16):
        user = f"u{i}"
        found = await me(gw, bearer(gw, user))
        variant = found["experiment"]["variant"]
        seen[user] = variant
        recs = found["recommendations"]
        assert recs and all(r["variant"] == f"reco-ab={variant}" for r in recs)
        served = gw.services.experiments.read_recommendation_id(recs[0]["recommendationId"])
        assert served is not None and served.variants == {"reco-ab": variant}
        if variant == "trending":
            assert len(recs) == 3 and served.strategy == "trending"
        else:
            assert len(recs) == 5 and served.strategy == "hybrid"
        flags = {f["key"]: f["value"] for f in found["flags"]}
        assert flags["banner"] == "spring" and flags["hero"] in ("v1", "v2")
        exposures = store.exposures_of(user)
        assert exposures["reco-ab"] == variant and exposures["hero-test"] in ("old", "new")
    assert set(seen.values()) == {"control", "trending"}
    # Asked again (and again): the same answer, no new exposure rows.
    rows = store._reader().execute("SELECT COUNT(*) FROM experiment_exposures").fetchone()[0]
    for user, variant in seen.items():
        again = await me(gw, bearer(gw, user))
        assert again["experiment"]["variant"] == variant
    assert (
        store._reader().execute("SELECT COUNT(*) FROM experiment_exposures").fetchone()[0] == rows
    )


async def test_events_citing_a_recommendation_are_attributed(gw: Gateway) -> None:
    found = await me(gw, bearer(gw, "buyer"))
    rec = found["recommendations"][0]
    variant = found["experiment"]["variant"]
    events = [
        {
            "messageId": "c1",
            "type": "click",
            "itemId": rec["item"]["id"],
            "properties": {"recommendationId": rec["recommendationId"]},
        },
        {
            "messageId": "p1",
            "type": "purchase",
            "itemId": rec["item"]["id"],
            "properties": {
                "recommendationId": rec["recommendationId"],
                "price": 20.0,
                "quantity": 2,
            },
        },
        {
            "messageId": "x1",
            "type": "click",
            "itemId": rec["item"]["id"],
            "properties": {"recommendationId": "r1.forged.AAAA"},
        },
    ]
    r = await gw.client.post("/v1/events", json=events, headers=bearer(gw, "buyer"))
    assert r.status_code == 200, r.text
    by = gw.services.store.attributions_by("reco-ab")
    strategy = "trending" if variant == "trending" else "hybrid"
    assert (variant, "click", strategy, rec["source"], 1) in by
    assert (variant, "purchase", strategy, rec["source"], 1) in by
    assert sum(n for *_rest, n in by) == 2  # the forged id is not attributed
    counts = gw.services.store.experiment_counts("reco-ab")[variant]
    assert counts.clickers == 1 and counts.purchasers == 1 and counts.revenue == 40.0


TRENDING = "{ trending(first: 3) { item { id } source recommendationId variant } }"


async def test_trending_carries_a_recommendation_id_that_attributes(gw: Gateway) -> None:
    views = [
        {"messageId": f"v{k}", "type": "view", "itemId": f"i{k % 4 + 1}", "userId": "viewer"}
        for k in range(12)
    ]
    r = await gw.client.post("/v1/events", json=views, headers=bearer(gw, "viewer"))
    assert r.status_code == 200, r.text
    answers = []
    for headers in ({}, bearer(gw, "buyer")):  # anonymous and signed in: the same public list
        r = await gw.client.post("/graphql", json={"query": TRENDING}, headers=headers)
        body = r.json()
        assert r.status_code == 200 and "errors" not in body, body
        assert "public" in r.headers["cache-control"]
        answers.append(body["data"]["trending"])
    assert answers[0] == answers[1] and len(answers[0]) == 3
    rid = answers[0][0]["recommendationId"]
    assert all(t["recommendationId"] == rid and t["variant"] is None for t in answers[0])
    served = gw.services.experiments.read_recommendation_id(rid)
    assert served is not None and served.strategy == "trending" and served.variants == {}
    assert served.sources == {t["item"]["id"]: "trending" for t in answers[0]}
    item = answers[0][0]["item"]["id"]
    click = {
        "messageId": "tc1",
        "type": "click",
        "itemId": item,
        "properties": {"recommendationId": rid},
    }
    r = await gw.client.post("/v1/events", json=[click], headers=bearer(gw, "buyer"))
    assert r.status_code == 200, r.text
    assert gw.services.store.attributions_by("") == [("", "click", "trending", "trending", 1)]


async def test_the_visitor_keeps_its_variant_after_identify(gw: Gateway) -> None:
    switched = 0
    for i in range(12):
        anon = f"visitor-{i}"
        before = (await me(gw, {"x-anonymous-id": anon}))["experiment"]["variant"]
        user = f"member-{i}"
        would_be = gw.services.experiments.assign(Subject(user, user)).variants["reco-ab"]
        switched += would_be != before
        ident = [{"messageId": f"id-{i}", "type": "identify", "userId": user, "anonymousId": anon}]
        r = await gw.client.post(
            "/v1/events", json=ident, headers={**bearer(gw, user), "x-anonymous-id": anon}
        )
        assert r.status_code == 200, r.text
        after = await me(gw, bearer(gw, user))
        assert after["experiment"]["variant"] == before, (anon, user)
        assert {r["variant"] for r in after["recommendations"]} == {f"reco-ab={before}"}
    assert switched > 0  # without the merge some would have changed variant


async def test_definitions_reload_while_serving_and_unknown_experiment(gw: Gateway) -> None:
    path = gw.data_dir / "experiments.json"
    first = await me(gw, bearer(gw, "u1"))
    assert first["experiment"]["variant"] is not None
    write(path, stop_experiment(defs_file.load(path), "reco-ab", NOW))
    stopped = await me(gw, bearer(gw, "u1"))
    assert stopped["experiment"]["variant"] is None
    assert all(r["variant"] is None for r in stopped["recommendations"])
    assert len(stopped["recommendations"]) == 5  # the default again
    r = await gw.gql('{ me { experiment(key: "nope") { variant } } }', user="u1")
    body = r.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "unknown experiment" in body["errors"][0]["message"]
    # A flag set through the file reaches the next request.
    write(path, set_flag(defs_file.load(path), "banner", {"text": "summer"}))
    flags = {f["key"]: f["value"] for f in (await me(gw, bearer(gw, "u1")))["flags"]}
    assert flags["banner"] == {"text": "summer"}
    assert json.loads(path.read_text())["stopped"]["reco-ab"]["feature"] == "recommendations"


async def test_erasure_removes_exposures_and_attributions(gw: Gateway) -> None:
    found = await me(gw, bearer(gw, "leaver"))
    rec = found["recommendations"][0]
    click = {
        "messageId": "leave-1",
        "type": "click",
        "itemId": rec["item"]["id"],
        "properties": {"recommendationId": rec["recommendationId"]},
    }
    r = await gw.client.post("/v1/events", json=[click], headers=bearer(gw, "leaver"))
    assert r.status_code == 200, r.text
    store = gw.services.store
    assert store.exposures_of("leaver") and store.attributions_by("reco-ab")
    r = await gw.gql("mutation { forgetMe { counts { store count } } }", user="leaver")
    assert "errors" not in r.json(), r.json()
    counts = {c["store"]: c["count"] for c in r.json()["data"]["forgetMe"]["counts"]}
    assert counts["experiments"] == 3  # two exposures (reco-ab, hero-test), one attribution
    assert store.exposures_of("leaver") == {}
    assert store.attributions_by("reco-ab") == []


async def test_flags_target_traits_and_channel(gw: Gateway) -> None:
    path = gw.data_dir / "experiments.json"
    defs = set_flag(defs_file.load(path), "offer", "none")
    defs = set_flag(defs, "offer", "gold-perk", condition={"traits.plan": "gold"})
    defs = set_flag(defs, "layout", "desktop")
    defs = set_flag(defs, "layout", "compact", condition={"channel": "mobile"})
    write(path, defs)
    gw.services.merge_traits("vip", {"plan": "gold"})
    query = "{ me { flags { key value } } }"

    async def flags(user: str, **headers: str) -> dict[str, Any]:
        r = await gw.client.post(
            "/graphql", json={"query": query}, headers={**bearer(gw, user), **headers}
        )
        return {f["key"]: f["value"] for f in r.json()["data"]["me"]["flags"]}

    assert (await flags("vip"))["offer"] == "gold-perk"
    assert (await flags("someone"))["offer"] == "none"
    assert (await flags("vip"))["layout"] == "desktop"
    assert (await flags("vip", **{"x-tailor-channel": "Mobile"}))["layout"] == "compact"

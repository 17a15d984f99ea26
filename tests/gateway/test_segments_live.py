"""Segments served live: trained from profiles, assigned on every profile change, exposed in GraphQL."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sklearn.metrics import adjusted_rand_score

from gateway.app import create_app
from gateway.cli.demo_world import load_demo_world
from gateway.cli.main import main
from gateway.security.auth import issue_token
from gateway.settings import load_settings
from gateway.wiring import build_services
from segments import SegmentError
from tests.conftest import SECRET

EXPECTED_NAMES = {
    "high_value_loyalist": "High-value loyalists",
    "browsing_enthusiast": "Browsing enthusiasts",
    "occasional_buyer": "Occasional buyers",
    "new_visitor": "New visitors",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    data = tmp_path_factory.mktemp("seg") / "var"
    settings = load_settings(environ={}, data_dir=data, jwt_secret=SECRET, encoder="hashing")
    info = load_demo_world(settings, seed=3, n_users=160, n_items=300)
    personas = json.loads((info["world_dir"] / "personas.json").read_text())
    return data, personas


async def test_segments_in_graphql_and_live_reassignment(
    world: tuple[Path, dict[str, str]],
) -> None:
    data, personas = world
    app = create_app(data_dir=data, jwt_secret=SECRET, encoder="hashing")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        r = await c.post(
            "/graphql",
            json={
                "query": "{ segments { id name description kind size traits { name value zScore } } }"
            },
        )
        segs = r.json()["data"]["segments"]
        assert len(segs) >= 2 and all(s["kind"] == "CLUSTER" for s in segs)
        assert sum(s["size"] for s in segs) == len(app.state.services.store.iter_profile_keys())
        assert all(s["traits"] and s["name"] and s["description"] for s in segs)
        one = await c.post(
            "/graphql", json={"query": f'{{ segment(id: "{segs[0]["id"]}") {{ id size }} }}'}
        )
        assert one.json()["data"]["segment"] == {"id": segs[0]["id"], "size": segs[0]["size"]}
        missing = await c.post("/graphql", json={"query": '{ segment(id: "nope") { id } }'})
        assert missing.json()["data"]["segment"] is None

        loyal = next(u for u, p in sorted(personas.items()) if p == "high_value_loyalist")
        token = issue_token(SECRET, loyal)
        me = await c.post(
            "/graphql",
            json={"query": "{ me { segment { id name } segments { id kind } } }"},
            headers={"authorization": f"Bearer {token}"},
        )
        mine = me.json()["data"]["me"]
        assert mine["segment"]["name"] == "High-value loyalists"
        assert mine["segments"][0]["id"] == mine["segment"]["id"]

        # A brand-new visitor is assigned by their first event, and the size follows.
        before = {s["id"]: s["size"] for s in segs}
        anon = {"x-anonymous-id": "fresh-visitor-1"}
        t = await c.post(
            "/v1/events",
            json=[{"messageId": "fv-1", "type": "view", "itemId": "i00001", "sessionId": "fs"}],
            headers=anon,
        )
        assert t.json()["accepted"] == 1
        me2 = await c.post(
            "/graphql", json={"query": "{ me { segment { id name } } }"}, headers=anon
        )
        seg = me2.json()["data"]["me"]["segment"]
        assert seg is not None
        after = await c.post("/graphql", json={"query": "{ segments { id size } }"})
        sizes = {s["id"]: s["size"] for s in after.json()["data"]["segments"]}
        assert sizes[seg["id"]] == before[seg["id"]] + 1

        # The visitor signs in: the anonymous profile merges into the user's and leaves its
        # segment (the anonymous id alone no longer reads a segment, and the size follows).
        visitor = issue_token(SECRET, "fresh-user-1")
        merged = await c.post(
            "/graphql",
            json={"query": 'mutation { identify(anonymousId: "fresh-visitor-1") { status } }'},
            headers={"authorization": f"Bearer {visitor}", **anon},
        )
        assert merged.json()["data"]["identify"]["status"] == "accepted"
        assert app.state.services.segments.segment_of("anon:fresh-visitor-1") is None
        assert app.state.services.segments.segment_of("fresh-user-1") is not None
        gone = await c.post("/graphql", json={"query": "{ me { segment { id } } }"}, headers=anon)
        assert gone.json()["data"]["me"]["segment"] is None


def test_cli_train_and_report(world: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    data, _ = world
    assert main(["train", "segments", "--data-dir", str(data)]) == 0
    out = tmp_path / "segments.html"
    assert main(["segments", "report", "--out", str(out), "--data-dir", str(data)]) == 0
    html = out.read_text()
    assert (
        html.count("data:image/png;base64,") >= 4
    )  # silhouette, elbow, sizes, heatmap, projection
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc


def test_rule_segments_from_a_segments_file(
    world: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    data, personas = world
    rules = tmp_path / "segments.toml"
    rules.write_text(
        '[[rule]]\nid = "window-shoppers"\nname = "Window shoppers"\n'
        'description = "Many views, no purchase"\nexpression = "views_30d >= 5 and purchases_30d == 0"\n'
    )
    settings = load_settings(
        environ={}, data_dir=data, jwt_secret=SECRET, encoder="hashing", segments_file=rules
    )
    services = build_services(settings)
    model = services.segments.train()
    assert [r.id for r in model.rules] == ["window-shoppers"]
    browsers = [u for u, p in personas.items() if p == "browsing_enthusiast"]
    in_rule = [u for u in browsers if "window-shoppers" in services.segments.rules_of(u)]
    assert len(in_rule) >= len(browsers) // 2
    seg = services.segments.segment("window-shoppers")
    assert seg is not None and seg.size >= len(in_rule)
    rules.write_text(
        '[[rule]]\nid = "bad"\nname = "Bad"\ndescription = ""\nexpression = "views_7d >= "\n'
    )
    with pytest.raises(SegmentError, match=r"position|column"):
        services.segments.train()
    services.store.close()


@pytest.mark.slow
def test_clusters_recover_the_planted_personas(tmp_path: Path) -> None:
    settings = load_settings(
        environ={}, data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing"
    )
    info = load_demo_world(settings, seed=42, n_users=600, n_items=1000)
    personas = json.loads((info["world_dir"] / "personas.json").read_text())
    services = build_services(settings)
    services.segments.load_latest()
    pairs = [(p, services.segments.segment_of(u)) for u, p in personas.items()]
    pairs = [(p, s) for p, s in pairs if s is not None]
    assert len(pairs) == len(personas)
    truth, pred = zip(*pairs, strict=True)
    ari = adjusted_rand_score(truth, pred)
    print(f"adjusted Rand index vs planted personas: {ari:.3f}")
    assert ari >= 0.9
    named = 0
    for persona, expected in EXPECTED_NAMES.items():
        majority = Counter(s for p, s in pairs if p == persona).most_common(1)[0][0]
        named += services.segments.name_of(majority) == expected
    assert named >= 3

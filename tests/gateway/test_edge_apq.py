"""Automatic persisted queries end to end (Apollo protocol), safelist mode and its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.cli.main import main
from gateway.edge.apq import ManifestError, parse_manifest
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_edge_helpers import apq_params, edge, seed_items, sha

__all__ = ["edge"]

ITEM = "query Item($id: ID!) { item(id: $id) { id title } }"


async def test_apq_over_get_end_to_end(edge: Gateway) -> None:
    """What Apollo Client's persisted-query link does with useGETForHashedQueries."""
    seed_items(edge)
    miss = await edge.client.get("/graphql", params=apq_params(ITEM, id="i1"))
    assert miss.status_code == 200
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert miss.headers["cache-control"] == "no-store"

    register = await edge.client.get("/graphql", params=apq_params(ITEM, with_query=True, id="i1"))
    assert register.json() == {"data": {"item": {"id": "i1", "title": "Item 1"}}}
    assert register.headers["x-cache"] == "MISS"

    hit = await edge.client.get("/graphql", params=apq_params(ITEM, id="i1"))
    assert hit.headers["x-cache"] == "HIT"
    assert hit.content == register.content
    # Variables are canonical: another spelling of the same JSON is the same key.
    params = apq_params(ITEM)
    params["variables"] = '{ "id" : "i1" }'
    assert (await edge.client.get("/graphql", params=params)).headers["x-cache"] == "HIT"
    other = await edge.client.get("/graphql", params=apq_params(ITEM, id="i2"))
    assert other.json() == {"data": {"item": {"id": "i2", "title": "Item 2"}}}
    assert other.headers["x-cache"] == "MISS"
    # A hashed mutation over GET is refused like any mutation over GET.
    mutation = 'mutation { identify(anonymousId: "a1") { status } }'
    await edge.client.post(
        "/graphql",
        json={"query": mutation, "extensions": json.loads(apq_params(mutation)["extensions"])},
    )
    r = await edge.client.get("/graphql", params=apq_params(mutation))
    assert r.status_code == 405


async def test_apq_rejects_a_hash_that_does_not_match_its_query(edge: Gateway) -> None:
    params = apq_params(ITEM, id="i1")
    params["query"] = "{ trending { score } }"
    r = await edge.client.get("/graphql", params=params)
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "provided sha does not match query"
    assert r.headers["cache-control"] == "no-store"
    # ... and nothing was registered under that hash.
    r = await edge.client.get("/graphql", params=apq_params(ITEM, id="i1"))
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


@pytest.mark.parametrize(
    "ext",
    [
        '{"persistedQuery": {"version": 2, "sha256Hash": "%s"}}' % ("a" * 64),
        '{"persistedQuery": {"version": 1, "sha256Hash": "xyz"}}',
        '{"persistedQuery": "nope"}',
    ],
)
async def test_apq_bad_extensions_are_400(edge: Gateway, ext: str) -> None:
    r = await edge.client.get("/graphql", params={"extensions": ext})
    assert r.status_code == 400
    assert r.headers["cache-control"] == "no-store"


def _manifest(tmp_path: Path, *queries: str) -> Path:
    path = tmp_path / "manifest.json"
    ops = [{"id": sha(q), "name": None, "type": "query", "body": q} for q in queries]
    path.write_text(
        json.dumps({"format": "apollo-persisted-query-manifest", "version": 1, "operations": ops})
    )
    return path


async def test_safelist_mode_runs_only_registered_operations(
    tmp_path: Path, clock: FakeClock
) -> None:
    data_dir = tmp_path / "var"
    manifest = _manifest(tmp_path, ITEM)
    assert main(["persisted-queries", "register", str(manifest), "--data-dir", str(data_dir)]) == 0
    assert main(["persisted-queries", "register", str(manifest), "--data-dir", str(data_dir)]) == 0
    app = create_app(
        data_dir=data_dir, jwt_secret=SECRET, clock=clock, persisted_queries_safelist=True
    )
    async with app.router.lifespan_context(app):
        assert app.state.services.store.count_persisted_queries() == 1
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            ok = await c.get("/graphql", params=apq_params(ITEM, id="i1"))
            assert ok.status_code == 200 and ok.json() == {"data": {"item": None}}
            full = await c.post("/graphql", json={"query": ITEM, "variables": {"id": "i1"}})
            assert full.status_code == 200 and "errors" not in full.json()
            for r in (
                await c.post("/graphql", json={"query": "{ trending { score } }"}),
                await c.get(
                    "/graphql", params=apq_params("{ trending { score } }", with_query=True)
                ),
            ):
                assert r.status_code == 400
                assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
                assert r.headers["cache-control"] == "no-store"


def test_register_refuses_bad_manifests(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0" * 64: "{ trending { score } }"}))
    assert main(["persisted-queries", "register", str(bad), "--data-dir", str(tmp_path / "v")]) == 2
    assert parse_manifest({sha("{ a }"): "{ a }"}) == [(sha("{ a }"), "{ a }", None)]
    with pytest.raises(ManifestError):
        parse_manifest([1, 2])
    with pytest.raises(ManifestError):
        parse_manifest({"operations": [{"id": sha("{ a }")}]})

"""GraphQL-over-HTTP behaviour: media types, status codes, methods, limits."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from gateway.app import create_app
from tests.conftest import SECRET, Gateway

GQL_RESPONSE = "application/graphql-response+json"


async def test_post_json_answers_json(gateway: Gateway) -> None:
    r = await gateway.gql("{ trending(first: 3) { score } }")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"data": {"trending": []}}


async def test_accept_graphql_response_json_is_honoured(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"accept": GQL_RESPONSE}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(GQL_RESPONSE)
    assert r.json() == {"data": {"me": None}}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (f"{GQL_RESPONSE}, application/json;q=0.9", GQL_RESPONSE),
        (f"application/json, {GQL_RESPONSE};q=0.5", "application/json"),
        ("*/*", "application/json"),
        ("application/*", "application/json"),
    ],
)
async def test_accept_negotiation(gateway: Gateway, accept: str, expected: str) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"accept": accept}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(expected)


async def test_unacceptable_accept_is_406(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"accept": "text/xml"}
    )
    assert r.status_code == 406
    assert r.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    "ctype", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""]
)
async def test_unsupported_content_type_is_415(gateway: Gateway, ctype: str) -> None:
    headers = {"content-type": ctype} if ctype else {}
    r = await gateway.client.post("/graphql", content=b'{"query":"{ me { id } }"}', headers=headers)
    assert r.status_code == 415
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "an empty batch"),
        (b"42", "must be a JSON object"),
        (b'{"variables": {}}', "`query` is required"),
        (b'{"query": 42}', "`query` must be a string"),
        (b'{"query": "{ me { id } }", "variables": [1]}', "`variables` must be an object"),
        (b'{"query": "{ me { id } }", "operationName": 3}', "`operationName` must be a string"),
    ],
)
async def test_malformed_requests_are_400(gateway: Gateway, body: bytes, fragment: str) -> None:
    r = await gateway.client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert fragment in r.json()["errors"][0]["message"]


async def test_parse_error_status_depends_on_media_type(gateway: Gateway) -> None:
    body = {"query": "{ me { id "}
    legacy = await gateway.client.post("/graphql", json=body)
    assert legacy.status_code == 200
    assert legacy.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "data" not in legacy.json()
    strict = await gateway.client.post("/graphql", json=body, headers={"accept": GQL_RESPONSE})
    assert strict.status_code == 400
    assert "data" not in strict.json()


async def test_validation_error_is_400_with_graphql_response_json(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": "{ nope }"}, headers={"accept": GQL_RESPONSE}
    )
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert "nope" in err["message"]
    assert err["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_variable_coercion_error_is_400_with_graphql_response_json(gateway: Gateway) -> None:
    query = "query ($n: Int!) { trending(first: $n) { score } }"
    r = await gateway.client.post(
        "/graphql",
        json={"query": query, "variables": {"n": "ten"}},
        headers={"accept": GQL_RESPONSE},
    )
    assert r.status_code == 400
    assert "$n" in r.json()["errors"][0]["message"]
    legacy = await gateway.client.post("/graphql", json={"query": query, "variables": {}})
    assert legacy.status_code == 200
    assert "data" not in legacy.json()


async def test_get_runs_queries(gateway: Gateway) -> None:
    r = await gateway.client.get(
        "/graphql",
        params={
            "query": "query Q($n: Int) { trending(first: $n) { score } }",
            "variables": '{"n": 2}',
        },
    )
    assert r.status_code == 200
    assert r.json() == {"data": {"trending": []}}


async def test_get_with_bad_variables_is_400(gateway: Gateway) -> None:
    r = await gateway.client.get(
        "/graphql", params={"query": "{ me { id } }", "variables": "{oops"}
    )
    assert r.status_code == 400


async def test_mutation_over_get_is_405_with_allow_post(gateway: Gateway) -> None:
    q = 'mutation { track(events: [{messageId: "m1", type: view, itemId: "i1"}]) { accepted } }'
    r = await gateway.client.get("/graphql", params={"query": q}, headers={"x-anonymous-id": "a1"})
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert gateway.services.store.count_events() == 0


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(gateway: Gateway, method: str) -> None:
    r = await gateway.client.request(method, "/graphql", json={"query": "{ me { id } }"})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"


async def test_oversized_body_is_413(gateway: Gateway) -> None:
    big = orjson.dumps({"query": "{ me { id } }", "variables": {"x": "a" * 1_100_000}})
    r = await gateway.client.post(
        "/graphql", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_operation_name_selects_operation(gateway: Gateway) -> None:
    doc = "query A { me { id } } query B { trending(first: 1) { score } }"
    r = await gateway.client.post("/graphql", json={"query": doc, "operationName": "B"})
    assert r.json() == {"data": {"trending": []}}
    missing = await gateway.client.post("/graphql", json={"query": doc})
    assert "operationName" in missing.json()["errors"][0]["message"]


async def test_graphiql_in_development_only(gateway: Gateway) -> None:
    r = await gateway.client.get("/graphql", headers={"accept": "text/html"})
    assert r.status_code == 200
    assert "graphiql" in r.text.lower()


async def test_health_and_readiness(gateway: Gateway) -> None:
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    ready = await gateway.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] is True


async def test_batching_is_off_by_default(gateway: Gateway) -> None:
    batch = [{"query": "{ me { id } }"}, {"query": "{ trending(first: 1) { score } }"}]
    r = await gateway.client.post("/graphql", json=batch)
    assert r.status_code == 400
    assert "batched requests are disabled" in r.json()["errors"][0]["message"]


async def test_batching_when_on_is_bounded(tmp_path: Path) -> None:
    app = create_app(
        data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing", graphql_batch_max=2
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as c,
    ):
        batch = [
            {"query": "{ me { id } }"},
            {"query": "query($n: Int) { trending(first: $n) { score } }", "variables": {"n": 1}},
        ]
        r = await c.post("/graphql", json=batch, headers={"x-anonymous-id": "a1"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        assert r.json() == [{"data": {"me": {"id": "a1"}}}, {"data": {"trending": []}}]
        too_many = await c.post("/graphql", json=batch * 2)
        assert too_many.status_code == 400
        assert "the limit is 2" in too_many.json()["errors"][0]["message"]
        bad = await c.post("/graphql", json=[{"query": "{ me { id } }"}, {"nope": 1}])
        assert bad.status_code == 400

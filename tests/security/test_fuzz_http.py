"""Hostile JSON over HTTP (issue 21, item 7, the GraphQL/HTTP half): deeply nested and
wrongly typed input is a 4xx with a message, never a 500, and after any error the keep-alive
connection still serves the next request.

- GraphQL variables nested ~300 levels (even unused) used to crash the edge cache key (orjson's
  recursion limit) with a 500.
- An exception escaping a route was answered by Starlette's text 500 and then re-raised, so
  uvicorn closed the connection without ``Connection: close`` and the client's next request on
  it failed. The app now answers every such error itself (``gateway.http.ErrorMiddleware``).
- A property-based fuzz of ``/graphql`` (GET and POST) and ``/v1/events``: no 5xx, ever.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

from gateway import routes
from gateway.app import create_app
from gateway.security.auth import issue_token
from tests.conftest import SECRET
from tests.security.conftest import NORMAL_QUERY, code_of, open_gateway

TRENDING = "{ trending(first: 1) { score } }"


def _nested(depth: int, leaf: str = "1", kind: str = "list") -> str:
    """JSON text nesting ``leaf`` ``depth`` levels deep (built as text: encoders refuse it)."""
    if kind == "list":
        return "[" * depth + leaf + "]" * depth
    return '{"a":' * depth + leaf + "}" * depth


# --- deep variables ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("depth", [260, 300, 900])
async def test_deeply_nested_variables_are_a_400(tmp_path: Path, kind: str, depth: int) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        unused = '{"query":"' + TRENDING + '","variables":{"x":' + _nested(depth, kind=kind) + "}}"
        used = (
            '{"query":"query($x: [Int]) { trending(first: 1) { score } }",'
            '"variables":{"x":' + _nested(depth, kind=kind) + "}}"
        )
        for body in (unused, used):
            r = await gw.client.post(
                "/graphql", content=body, headers={"content-type": "application/json"}
            )
            assert r.status_code == 400, r.text
            assert code_of(r.json()) == "BAD_REQUEST"
            assert "nested" in r.json()["errors"][0]["message"]
        r = await gw.client.get(
            "/graphql",
            params={"query": TRENDING, "variables": '{"x":' + _nested(depth, kind=kind) + "}"},
        )
        assert r.status_code == 400 and "nested" in r.json()["errors"][0]["message"], r.text
        # the gateway still serves
        assert (await gw.gql(NORMAL_QUERY)).status_code == 200


async def test_moderately_nested_variables_are_served(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        body = '{"query":"' + TRENDING + '","variables":{"x":' + _nested(100) + "}}"
        r = await gw.client.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 200 and "errors" not in r.json(), r.text


# --- errors keep the connection usable --------------------------------------------------------


def _boom(request: Request) -> Response:
    raise RuntimeError("an unexpected failure inside a route")


async def test_an_unexpected_error_is_a_json_500_with_a_request_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "ping", _boom)
    async with open_gateway(tmp_path / "var") as gw:
        r = await gw.client.get("/v1/ping")  # the app answers: nothing escapes to the server
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/json"
        assert r.headers["cache-control"] == "no-store"
        error = r.json()["errors"][0]
        assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        request_id = error["extensions"]["requestId"]
        assert request_id in error["message"] and r.headers["x-request-id"] == request_id
        assert "RuntimeError" not in r.text  # nothing of the failure leaks
        assert (await gw.gql(NORMAL_QUERY)).status_code == 200


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, dict[str, str], bytes]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: tailor.test\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


async def test_keep_alive_survives_a_500_under_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a real uvicorn, a 500 is followed by a 200 on the same connection."""
    monkeypatch.setattr(routes, "ping", _boom)
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing")
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", lifespan="on", http="httptools"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            status, headers, body = await _exchange(reader, writer, "/v1/ping")
            assert status == 500 and code_of(orjson.loads(body)) == "INTERNAL_SERVER_ERROR"
            assert headers.get("connection", "").lower() != "close"
            status, _, body = await _exchange(reader, writer, "/healthz")  # same connection
            assert (status, orjson.loads(body)) == (200, {"status": "ok"})
        finally:
            writer.close()
    finally:
        server.should_exit = True
        await serving


# --- the fuzz ---------------------------------------------------------------------------------

HOSTILE_TEXT = st.sampled_from(
    ["²", "9" * 5000, "", " ", "\u0000", "\ud7ff", "💥", "i1", "view", "NaN", "-0", "1e999"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | HOSTILE_TEXT
)
KEYS = st.text(max_size=8) | st.sampled_from(
    ["query", "variables", "type", "properties", "quantity", "price", "__proto__", ""]
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


def _encode(value: Any) -> str:
    """JSON text of a value (big integers included, which orjson refuses)."""
    return json.dumps(value, ensure_ascii=False)


@st.composite
def json_text(draw: st.DrawFn) -> str:
    """Any JSON value, sometimes nested very deep, sometimes a raw number that no float holds."""
    choice = draw(st.integers(0, 19))
    if choice == 0:
        depth = draw(st.integers(1, 1200))
        return _nested(depth, _encode(draw(SCALARS)), draw(st.sampled_from(["list", "object"])))
    if choice == 1:
        return draw(st.sampled_from(["9" * 5000, "-" + "9" * 400, "1e400", "1" + "0" * 30]))
    return _encode(draw(JSON))


QUERIES = st.sampled_from(
    [
        TRENDING,
        NORMAL_QUERY,
        "query($x: Int) { trending(first: $x) { score } }",
        "query($q: String!) { search(query: $q, first: 2) { score } }",
        "query($ids: [ID!]!) { items(ids: $ids) { id } }",
        "mutation($e: [EventInput!]!) { track(events: $e) { accepted } }",
        'mutation($t: JSON) { identify(anonymousId: "a-1", traits: $t) { status } }',
        "{ me { id } }",
        "",
        "{",
    ]
) | st.text(min_size=1, max_size=40)


@st.composite
def variables_text(draw: st.DrawFn) -> str:
    """Mostly an object naming the variables of ``QUERIES`` with hostile values; sometimes any
    JSON at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(json_text())
    names = draw(st.lists(st.sampled_from(["x", "q", "ids", "e", "t", "unused"]), max_size=3))
    values = []
    for name in names:
        if draw(st.integers(0, 5)) == 0:  # deep, around orjson's and Python's limits
            depth = draw(st.integers(200, 1100))
            value = _nested(depth, "1", draw(st.sampled_from(["list", "object"])))
        elif name == "e" and draw(st.booleans()):
            value = "[" + ",".join(draw(st.lists(graphql_event(), min_size=1, max_size=3))) + "]"
        else:
            value = draw(json_text())
        values.append(f"{_encode(name)}:{value}")
    return "{" + ",".join(values) + "}"


@st.composite
def extensions_text(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(json_text())
    digest = draw(st.sampled_from(["0" * 64, "f" * 64, "xyz", "A" * 64]) | st.text(max_size=70))
    version = draw(st.sampled_from(["1", "2", '"1"', "null"]) | json_text())
    return '{"persistedQuery":{"version":' + version + ',"sha256Hash":' + _encode(digest) + "}}"


@st.composite
def graphql_body(draw: st.DrawFn) -> bytes:
    """A POST /graphql body: mostly a well-formed envelope with hostile parts."""
    if draw(st.integers(0, 7)) == 0:
        return draw(json_text()).encode("utf-8", "surrogatepass")
    parts = ['"query":' + _encode(draw(QUERIES))]
    if draw(st.integers(0, 4)) > 0:
        parts.append('"variables":' + draw(variables_text()))
    if draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(['"Q"', "null", '""']) | st.text(max_size=8).map(_encode))
        parts.append('"operationName":' + (draw(json_text()) if name == '""' else name))
    if draw(st.integers(0, 4)) == 0:
        parts.append('"extensions":' + draw(extensions_text()))
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


HOSTILE_NUMBERS = st.sampled_from(
    ["²", "٣", "9" * 5000, "1e400", -1, 10**30, 1.5, "", None, [], {}]
)


@st.composite
def event(draw: st.DrawFn) -> str:
    """A valid event (an anonymous visitor's), then 0-3 of its fields made hostile: wrongly
    typed, unicode or 5,000-digit numbers, or nested hundreds of levels deep."""
    etype = draw(st.sampled_from(["view", "click", "purchase", "rate", "search", "identify"]))
    fields: dict[str, str] = {
        "messageId": _encode(str(draw(st.uuids()))),
        "type": _encode(etype),
        "anonymousId": '"anon-fuzz"',
        "itemId": '"i1"',
        "timestamp": "1767225600",
    }
    properties = {"purchase": {"price": 10, "quantity": 2}, "rate": {"value": 4}}
    fields["properties"] = _encode(properties.get(etype, {"query": "shoes"}))
    if etype == "identify":
        fields["userId"] = '"fuzz-user"'
        fields["traits"] = '{"plan":"gold"}'
    for _ in range(draw(st.integers(0, 3))):
        target = draw(
            st.sampled_from([*fields, "properties", "properties", "traits", "sessionId", "x"])
        )
        how = draw(st.integers(0, 3))
        if how == 0:
            value = draw(json_text())
        elif how == 1:
            value = _nested(
                draw(st.integers(20, 600)), "1", draw(st.sampled_from(["list", "object"]))
            )
        elif target in ("properties", "traits"):
            key = draw(st.sampled_from(["price", "quantity", "value", "query", "email"]))
            value = "{" + _encode(key) + ":" + _encode(draw(HOSTILE_NUMBERS)) + "}"
        else:
            value = _encode(draw(HOSTILE_NUMBERS))
        fields[target] = value
    if draw(st.integers(0, 5)) == 0:
        fields.pop(draw(st.sampled_from(sorted(fields))))
    return "{" + ",".join(f"{_encode(k)}:{v}" for k, v in fields.items()) + "}"


@st.composite
def graphql_event(draw: st.DrawFn) -> str:
    """An ``EventInput`` for the ``track`` mutation (its fields are camelCase too)."""
    return draw(event()).replace('"traits":', '"sessionId":')


@st.composite
def events_body(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return "application/json", draw(json_text()).encode("utf-8", "surrogatepass")
    batch = draw(st.lists(event(), min_size=1, max_size=4))
    if kind == 1:
        return "application/x-ndjson", "\n".join(batch).encode("utf-8", "surrogatepass")
    text = "[" + ",".join(batch) + "]"
    if kind == 2:
        text = '{"batch":' + text + "}"
    return "application/json", text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz") / "var"
    app = create_app(data_dir=data_dir, jwt_secret=SECRET, rate_limit_per_s=0, encoder="hashing")
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


WHO = st.sampled_from([None, "user", "anonymous", "anonymous"])


def _headers(who: str | None) -> dict[str, str]:
    if who == "user":
        return {"authorization": f"Bearer {issue_token(SECRET, 'fuzz-user')}"}
    if who == "anonymous":
        return {"x-anonymous-id": "anon-fuzz"}
    return {}


def _no_5xx(r: Any, sent: Any) -> None:
    assert r.status_code < 500, (r.status_code, str(sent)[:300], r.text[:500])
    assert "Traceback" not in r.text


FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(body=graphql_body(), who=WHO, strict=st.booleans())
def test_fuzz_graphql_post_never_answers_5xx(
    client: TestClient, body: bytes, who: str | None, strict: bool
) -> None:
    headers = {
        "content-type": "application/json",
        "accept": "application/graphql-response+json" if strict else "application/json",
        **_headers(who),
    }
    _no_5xx(client.post("/graphql", content=body, headers=headers), body)


@FUZZ
@given(
    query=QUERIES,
    variables=st.none() | variables_text() | st.text(max_size=20),
    extensions=st.none() | extensions_text(),
    operation=st.none() | st.text(max_size=10),
    who=WHO,
)
def test_fuzz_graphql_get_never_answers_5xx(
    client: TestClient,
    query: str,
    variables: str | None,
    extensions: str | None,
    operation: str | None,
    who: str | None,
) -> None:
    params = {"query": query}
    for name, value in (
        ("variables", variables),
        ("extensions", extensions),
        ("operationName", operation),
    ):
        if value is not None:
            params[name] = value
    # Characters a URL cannot carry are the client library's problem, not the server's.
    params = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in params.items()}
    _no_5xx(client.get("/graphql", params=params, headers=_headers(who)), params)


@FUZZ
@given(body=events_body(), who=WHO)
def test_fuzz_events_never_answer_5xx(
    client: TestClient, body: tuple[str, bytes], who: str | None
) -> None:
    content_type, content = body
    headers = {"content-type": content_type, **_headers(who)}
    _no_5xx(client.post("/v1/events", content=content, headers=headers), content)

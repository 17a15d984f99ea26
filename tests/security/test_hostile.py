"""The hostile-input suite: each case asserts status, error code, that a normal query still works
afterwards, and that no data changed. Runs against one production-mode gateway with cookie
credentials enabled (so the CSRF cases apply)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
import pytest
import pytest_asyncio

from gateway.security.auth import issue_token
from tests.conftest import SECRET, Gateway
from tests.security.conftest import NORMAL_QUERY, code_of, fingerprint, open_gateway, seed

pytestmark = pytest.mark.asyncio(loop_scope="module")
GQL = "application/graphql-response+json"
COOKIE = "tailor_token"


def _b64(d: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


NONE_TOKEN = (
    _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "alice", "exp": 4102444800}) + "."
)
FORGED = issue_token("not-the-secret-but-long-enough-0123456789", "alice", scopes=["admin"])
EXPIRED = issue_token(SECRET, "alice", ttl_s=-60)
CONFUSED = jwt.encode({"sub": "alice", "exp": 4102444800}, SECRET, algorithm="HS512")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def q(query: str, **extra: Any) -> bytes:
    return orjson.dumps({"query": query, **extra})


def fragment_fanout(levels: int, fan: int) -> str:
    frags = [
        f"fragment F{i} on Query {{ {' '.join([f'...F{i + 1}'] * fan)} }}" for i in range(levels)
    ]
    frags.append(f"fragment F{levels} on Query {{ trending(first: 1) {{ score }} }}")
    return "{ ...F0 } " + " ".join(frags)


@dataclass
class Case:
    id: str
    status: int
    code: str | None
    method: str = "POST"
    path: str = "/graphql"
    body: bytes | None = None
    params: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    check: Any = None  # extra assertion on the parsed body


def _no_suggestion(body: dict[str, Any]) -> None:
    assert "Did you mean" not in json.dumps(body)


def _forbidden_and_null(body: dict[str, Any]) -> None:
    assert body["data"]["user"] is None
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def _at_most_max_first(body: dict[str, Any]) -> None:
    assert len(body["data"]["trending"]) <= 100


def _rejected_not_stored(body: dict[str, Any]) -> None:
    assert body["accepted"] == 0 and body["rejected"] == 1


JSON = {"content-type": "application/json"}
ITEM_FIELDS = (
    "item { id title description tags price currency available categories createdAt updatedAt } "
    "score reason source"
)
ALICE = bearer(issue_token(SECRET, "alice"))
BOB = bearer(issue_token(SECRET, "bob"))
COOKIE_HDR = {"cookie": f"{COOKIE}={issue_token(SECRET, 'alice')}"}

CASES = [
    Case(
        "oversized-body",
        413,
        "PAYLOAD_TOO_LARGE",
        body=q("{ me { id } }", variables={"x": "a" * 1_100_000}),
    ),
    Case("malformed-json", 400, "BAD_REQUEST", body=b'{"query": "{ me { id } }"'),
    Case("json-not-object", 400, "BAD_REQUEST", body=b'"{ me { id } }"'),
    Case(
        "content-type-text-plain",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        body=q("{ me { id } }"),
        headers={"content-type": "text/plain"},
    ),
    Case(
        "content-type-form",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        body=b"query=%7B+me+%7B+id+%7D+%7D",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "content-type-multipart",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        body=b"--x\r\n\r\n--x--",
        headers={"content-type": "multipart/form-data; boundary=x"},
    ),
    Case(
        "content-type-xml",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        body=b"<query/>",
        headers={"content-type": "application/xml"},
    ),
    Case("depth-bomb", 400, "MAX_DEPTH_LIMIT", body=q("{ " + "me { " * 30 + "id" + " }" * 31)),
    Case(
        "alias-bomb",
        400,
        "MAX_ALIASES_LIMIT",
        body=q("{ me { " + " ".join(f"a{i}: id" for i in range(200)) + " } }"),
    ),
    Case(
        "root-field-bomb",
        400,
        "MAX_ROOT_FIELDS_LIMIT",
        body=q("{ " + " ".join(f"t{i}: trending(first: 1) {{ score }}" for i in range(25)) + " }"),
    ),
    Case(
        "field-duplicated-1000x",
        400,
        "MAX_DUPLICATE_FIELDS_LIMIT",
        body=q("{ me { " + "id " * 1000 + "} }"),
    ),
    Case(
        "directive-overload",
        400,
        "MAX_DIRECTIVES_LIMIT",
        body=q("{ me " + "@include(if: true) " * 60 + "{ id } }"),
    ),
    Case(
        "token-bomb",
        400,
        "MAX_TOKENS_LIMIT",
        body=q("{ me { id } }" + " query Q { me { id } }" * 2000),
    ),
    Case(
        "nested-list-literals",
        400,
        "MAX_DEPTH_LIMIT",
        body=q("{ items(ids: " + "[" * 600 + "]" * 600 + ") { id } }"),
    ),
    Case(
        "cost-bomb",
        400,
        "MAX_COST_LIMIT",
        body=q(
            "{ "
            + " ".join(f"t{i}: trending(first: 100) {{ {ITEM_FIELDS} }}" for i in range(15))
            + " }"
        ),
    ),
    Case(
        "fragment-fanout-bomb",
        400,
        "MAX_ROOT_FIELDS_LIMIT",
        body=q(fragment_fanout(12, 8)),
        check=lambda b: "MAX_COST_LIMIT" in {e["extensions"]["code"] for e in b["errors"]},
    ),
    Case(
        "fragment-cycle",
        400,
        "GRAPHQL_VALIDATION_FAILED",
        body=q("fragment A on Query { ...B } fragment B on Query { ...A } { ...A }"),
        headers={**JSON, "accept": GQL},
    ),
    Case(
        "huge-first-is-clamped",
        200,
        None,
        body=q("{ trending(first: 1000000000) { score } }"),
        check=_at_most_max_first,
    ),
    Case(
        "first-overflows-int",
        400,
        "GRAPHQL_VALIDATION_FAILED",
        body=q("{ trending(first: 99999999999999999999) { score } }"),
        headers={**JSON, "accept": GQL},
    ),
    Case(
        "oversized-batch", 400, "BAD_REQUEST", body=orjson.dumps([{"query": "{ me { id } }"}] * 500)
    ),
    Case(
        "introspection-in-production",
        400,
        "INTROSPECTION_DISABLED",
        body=q("{ __schema { types { name } } }"),
    ),
    Case(
        "type-introspection-in-production",
        400,
        "INTROSPECTION_DISABLED",
        body=q('{ __type(name: "User") { name } }'),
    ),
    Case(
        "suggestions-masked",
        400,
        "GRAPHQL_VALIDATION_FAILED",
        body=q("{ mee { id } trendin { score } }"),
        headers={**JSON, "accept": GQL},
        check=_no_suggestion,
    ),
    Case(
        "graphiql-off-in-production",
        406,
        "NOT_ACCEPTABLE",
        method="GET",
        headers={"accept": "text/html"},
        check=lambda b: "graphiql" not in json.dumps(b).lower(),
    ),
    Case(
        "mutation-over-get",
        405,
        "METHOD_NOT_ALLOWED",
        method="GET",
        params={"query": "mutation { setConsent(tracking: false) { tracking } }"},
        headers=ALICE,
    ),
    Case(
        "csrf-get-with-cookie-no-preflight-header",
        403,
        "CSRF_REJECTED",
        method="GET",
        params={"query": "{ me { id } }"},
        headers=COOKIE_HDR,
    ),
    Case(
        "csrf-text-plain-with-cookie",
        403,
        "CSRF_REJECTED",
        body=q("mutation { forgetMe { total } }"),
        headers={"content-type": "text/plain", **COOKIE_HDR},
    ),
    Case(
        "csrf-form-with-cookie",
        403,
        "CSRF_REJECTED",
        body=b"query=mutation",
        headers={"content-type": "application/x-www-form-urlencoded", **COOKIE_HDR},
    ),
    Case(
        "forged-token",
        401,
        "UNAUTHENTICATED",
        body=q('{ user(id: "alice") { traits } }'),
        headers={**JSON, **bearer(FORGED)},
    ),
    Case(
        "expired-token",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, **bearer(EXPIRED)},
    ),
    Case(
        "none-algorithm-token",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, **bearer(NONE_TOKEN)},
    ),
    Case(
        "algorithm-confusion-token",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, **bearer(CONFUSED)},
    ),
    Case(
        "garbage-authorization",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, "authorization": "Basic YTpi"},
    ),
    Case(
        "invalid-api-key",
        401,
        "INVALID_API_KEY",
        body=q("{ me { id } }"),
        headers={**JSON, "x-api-key": "tk_0123456789abcdef_nope"},
    ),
    Case(
        "another-users-data",
        200,
        "FORBIDDEN",
        body=q('{ user(id: "alice") { traits } }'),
        headers={**JSON, **BOB},
        check=_forbidden_and_null,
    ),
    Case(
        "another-users-erasure",
        200,
        "FORBIDDEN",
        body=q('mutation { forgetUser(id: "alice") { total } }'),
        headers={**JSON, **BOB},
    ),
    Case(
        "another-users-events",
        200,
        None,
        path="/v1/events",
        body=orjson.dumps(
            [{"messageId": "evil-1", "type": "purchase", "userId": "alice", "itemId": "i1"}]
        ),
        headers={**JSON, **BOB},
        check=_rejected_not_stored,
    ),
    Case(
        "unknown-id",
        200,
        None,
        body=q('{ item(id: "does-not-exist") { id } }'),
        check=lambda b: b["data"] == {"item": None},
    ),
    Case("invalid-utf8", 400, "BAD_REQUEST", body=b'{"query": "{ me { id \xff\xfe } }"}'),
    Case(
        "huge-variables",
        413,
        "PAYLOAD_TOO_LARGE",
        body=q(
            "query ($c: String) { trending(first: 1, category: $c) { score } }",
            variables={"c": "x" * 900_000, **{f"v{i}": i for i in range(5000)}},
        ),
    ),
    Case(
        "nan-number",
        400,
        "BAD_REQUEST",
        body=b'{"query": "query ($n: Int) { trending(first: $n) { score } }", "variables": {"n": NaN}}',
    ),
    Case(
        "infinity-number",
        400,
        "BAD_REQUEST",
        body=b'{"query": "query ($n: Float) { trending { score } }", "variables": {"n": Infinity}}',
    ),
    Case(
        "overflowing-number",
        400,
        "BAD_REQUEST",
        body=b'{"query": "{ me { id } }", "variables": {"n": 1e999}}',
    ),
    Case("injection-in-id", 200, "BAD_USER_INPUT", body=q("{ item(id: \"1' OR '1'='1\") { id } }")),
    Case(
        "injection-in-filter",
        200,
        None,
        body=q("""{ trending(first: 3, category: "'; DROP TABLE events; --") { score } }"""),
        check=lambda b: b["data"] == {"trending": []},
    ),
    Case(
        "injection-in-anonymous-id",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, "x-anonymous-id": "x' OR 1=1 --"},
    ),
    Case(
        "oversized-anonymous-id-header",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, "x-anonymous-id": "a" * 100_000},
    ),
    Case(
        "oversized-authorization-header",
        401,
        "UNAUTHENTICATED",
        body=q("{ me { id } }"),
        headers={**JSON, "authorization": "Bearer " + "a" * 100_000},
    ),
    Case(
        "unacceptable-accept",
        406,
        "NOT_ACCEPTABLE",
        body=q("{ me { id } }"),
        headers={**JSON, "accept": "text/xml"},
    ),
    Case("put-method", 405, "METHOD_NOT_ALLOWED", method="PUT", body=q("{ me { id } }")),
    Case(
        "events-batch-too-large",
        413,
        "PAYLOAD_TOO_LARGE",
        path="/v1/events",
        body=orjson.dumps(
            [{"messageId": f"m{i}", "type": "view", "itemId": "i1"} for i in range(1001)]
        ),
        headers={**JSON, **BOB},
    ),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def prod(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("hostile") / "var"
    async with open_gateway(
        data_dir, production=True, auth_cookie=COOKIE, rate_limit_per_s=0
    ) as gw:
        await seed(gw)
        yield gw


async def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_input(prod: Gateway, case: Case) -> None:
    before = fingerprint(prod)
    started = time.perf_counter()
    r = await prod.client.request(
        case.method, case.path, content=case.body, params=case.params, headers=case.headers
    )
    elapsed = time.perf_counter() - started
    body = r.json()
    assert r.status_code == case.status, (r.status_code, r.text[:300])
    assert code_of(body) == case.code, r.text[:300]
    if case.check is not None:
        case.check(body)
    assert "Traceback" not in r.text and 'File "' not in r.text
    # Milliseconds in practice; the bound is generous because it is wall clock on a possibly
    # loaded machine, and still catches a refusal that does real work (parsing, a blow-up).
    assert elapsed < 10.0, f"{case.id} took {elapsed:.2f}s: hostile input must be refused cheaply"
    after = await prod.gql(NORMAL_QUERY)
    assert after.status_code == 200 and "errors" not in after.json()
    assert len(after.json()["data"]["trending"]) == 3
    assert fingerprint(prod) == before, f"{case.id} changed stored data"

"""Issue 21, items 5, 11 and part of 13: who may share a cached answer.

- Item 5: every field of the schema (introspected), as user A then as user B, an anonymous
  visitor and a caller without credentials, under the default settings and under
  ``edge_default_max_age=60``: an answer that depends on the caller is never ``public`` (nor
  stored under a shared key), and nobody is ever served an answer that is not their own.
- Item 11: ``Sec-GPC: 1`` / ``DNT: 1`` are part of the cache key of personalized answers (and
  of their ``Vary``): a cached personalized answer never reaches an opted-out request, nor the
  reverse.
- Item 13 (part): cookie-authenticated answers carry ``Vary: Cookie``; the operation cost model
  weighs resolvers that run a model or a FAISS search, so 24 aliased ``recommendations`` are
  refused while the README's queries pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_enum_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
    is_required_argument,
)

from cache import CacheScope
from catalog.importer import validate_item
from gateway.graphql.limits import MAX_COST, OperationLimits, measure, parse_limited
from resolvers.schema import build_schema
from tests.conftest import Gateway
from tests.security.conftest import code_of, open_gateway, track

SCHEMA: GraphQLSchema = build_schema()._schema
CATALOG = [
    ("i1", "Red floral summer dress", "Dresses", 49.0),
    ("i2", "Light floral summer sundress", "Dresses", 39.0),
    ("i3", "Leather winter boots", "Shoes", 149.0),
    ("i4", "Warm winter boots with fur", "Shoes", 99.0),
    ("i5", "Leather tote bag", "Bags", 79.0),
    ("i6", "White running sneakers", "Shoes", 89.0),
]
ANON = "anon-zed"
# A gateway for these tests: the hashing encoder keeps the FAISS index fast to build; no rate
# limit, since one walk sends hundreds of requests from one client.
BASE: dict[str, Any] = {"encoder": "hashing", "rate_limit_per_s": 0}


# ---------------------------------------------------------------------------------- set-up
async def _seed(gw: Gateway) -> None:
    """Items with a content index; alice and bob with different tastes, bob without consent to
    personalization; an anonymous visitor with a history of their own."""
    items = [
        validate_item(
            {"id": i, "title": t, "description": t, "categories": [c], "price": p}, gw.clock()
        )
        for i, t, c, p in CATALOG
    ]
    gw.services.store.upsert_items(items)
    gw.services.catalog.update(items)
    gw.services.content.build(items)
    r = await track(gw, "alice", [("view", "i1"), ("click", "i2"), ("purchase", "i2")])
    assert r.status_code == 200, r.text
    r = await track(gw, "bob", [("view", "i3"), ("view", "i4"), ("purchase", "i4")])
    assert r.status_code == 200, r.text
    r = await gw.client.post(
        "/v1/events",
        json=[
            {"messageId": "zed-1", "type": "view", "itemId": "i5", "timestamp": gw.clock.now},
            {"messageId": "zed-2", "type": "view", "itemId": "i6", "timestamp": gw.clock.now},
        ],
        headers={"x-anonymous-id": ANON},
    )
    assert r.status_code == 200, r.text
    gw.services.privacy.set_consent("bob", personalization=False)


@dataclass(frozen=True)
class Caller:
    name: str
    headers: Any  # (Gateway) -> dict[str, str]


CALLERS = (
    Caller("alice", lambda gw: {"authorization": f"Bearer {gw.token('alice')}"}),
    Caller("bob", lambda gw: {"authorization": f"Bearer {gw.token('bob')}"}),
    Caller("anonymous", lambda gw: {"x-anonymous-id": ANON}),
    Caller("nobody", lambda gw: {}),
)


async def _purge(gw: Gateway) -> None:
    r = await gw.client.post(
        "/admin/purge",
        json={"all": True},
        headers={"authorization": f"Bearer {gw.token('ops', 'admin')}"},
    )
    assert r.status_code == 200, r.text


async def _ask(gw: Gateway, query: str, caller: Caller, **extra: str) -> httpx.Response:
    # GET: the form a browser or a CDN caches.
    headers = {**caller.headers(gw), **extra}
    return await gw.client.get("/graphql", params={"query": query}, headers=headers)


# ------------------------------------------------------------------- queries of every field
# Values for required arguments: by (field, argument), then by argument name.
ARG_VALUES: dict[tuple[str, str] | str, str] = {
    ("user", "id"): '"alice"',
    ("segment", "id"): '"c0"',
    "id": '"i1"',
    "ids": '["i1", "i2"]',
    "itemId": '"i1"',
    "text": '"floral summer"',
}


def _arg_value(field_name: str, arg_name: str, arg: Any) -> str:
    found = ARG_VALUES.get((field_name, arg_name)) or ARG_VALUES.get(arg_name)
    if found is not None:
        return found
    named = get_named_type(arg.type)
    if is_enum_type(named):
        value = next(iter(named.values))
    else:
        value = {"Int": "3", "Float": "0.5", "Boolean": "true"}.get(named.name, '"x"')
    return (
        f"[{value}]"
        if is_list_type(arg.type.of_type if is_non_null_type(arg.type) else arg.type)
        else value
    )


def _call(name: str, field: GraphQLField) -> str:
    """``name(requiredArg: value, ...)``: the field with only its required arguments."""
    args = [
        f"{arg_name}: {_arg_value(name, arg_name, arg)}"
        for arg_name, arg in field.args.items()
        if is_required_argument(arg)
    ]
    return f"{name}({', '.join(args)})" if args else name


def _selection(field: GraphQLField, depth: int) -> str:
    """Every field of the returned type that needs no argument, ``depth`` levels down."""
    named = get_named_type(field.type)
    if is_leaf_type(named):
        return ""
    if depth == 0 or not isinstance(named, GraphQLObjectType):
        return " { __typename }"
    parts = [
        name + _selection(sub, depth - 1)
        for name, sub in named.fields.items()
        if not any(is_required_argument(a) for a in sub.args.values())
    ]
    return " { " + " ".join(parts) + " }"


def field_queries() -> dict[str, str]:
    """One minimal query per root query field, and one per ``User`` field (through ``me``)."""
    query_type = SCHEMA.query_type
    user_type = SCHEMA.get_type("User")
    assert query_type is not None and isinstance(user_type, GraphQLObjectType)
    out = {
        f"Query.{name}": f"{{ {_call(name, f)}{_selection(f, 3)} }}"
        for name, f in query_type.fields.items()
    }
    for name, f in user_type.fields.items():
        out[f"User.{name}"] = f"{{ me {{ {_call(name, f)}{_selection(f, 3)} }} }}"
    return out


FIELD_QUERIES = field_queries()


def test_the_walk_covers_every_field() -> None:
    query_type = SCHEMA.query_type
    user_type = SCHEMA.get_type("User")
    assert query_type is not None and isinstance(user_type, GraphQLObjectType)
    expected = {f"Query.{n}" for n in query_type.fields} | {f"User.{n}" for n in user_type.fields}
    assert set(FIELD_QUERIES) == expected
    # The fields the issue names are among them.
    assert {"Query.search", "Query.consent", "Query.me", "User.recommendations"} <= expected


# ------------------------------------------------------------------------------------ item 5
def _shared(response: httpx.Response) -> bool:
    cc = response.headers.get("cache-control", "")
    return "public" in cc or "s-maxage" in cc


def _stored_scope(gw: Gateway, response: httpx.Response) -> CacheScope | None:
    key = response.headers.get("x-cache-key")
    if key is None:
        return None
    entry, _state = gw.app.state.edge.responses.lookup(key)
    return None if entry is None else entry.policy.scope


@pytest.fixture(params=[{}, {"edge_default_max_age": 60}], ids=["defaults", "default-max-age-60"])
async def walked(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    async with open_gateway(tmp_path / "var", **BASE, **request.param) as gw:
        await _seed(gw)
        yield gw


async def test_no_answer_that_depends_on_the_caller_is_shared(walked: Gateway) -> None:
    gw = walked
    first, *others = CALLERS
    problems: list[str] = []
    for field, query in FIELD_QUERIES.items():
        # What each caller should get: computed for that caller alone, from an empty cache.
        truth: dict[str, Any] = {}
        for caller in CALLERS:
            await _purge(gw)
            r = await _ask(gw, query, caller)
            assert r.status_code == 200, (field, caller.name, r.text)
            truth[caller.name] = r.json()
        depends = any(truth[c.name] != truth[first.name] for c in others)
        # A first, then everyone else: whatever A's answer left in the cache.
        await _purge(gw)
        served = {first.name: await _ask(gw, query, first)}
        for caller in others:
            served[caller.name] = await _ask(gw, query, caller)
        for name, r in served.items():
            if r.json() != truth[name]:
                problems.append(
                    f"{field}: {name} was served {r.text[:200]} (X-Cache {r.headers.get('x-cache')})"
                )
            if depends and _shared(r):
                problems.append(f"{field}: answered {name} with {r.headers['cache-control']!r}")
            if depends and _stored_scope(gw, r) is CacheScope.PUBLIC:
                problems.append(f"{field}: {name}'s answer is stored as PUBLIC")
    assert not problems, "\n".join(problems)


async def test_search_and_consent_are_private_with_a_default_max_age(tmp_path: Path) -> None:
    """The two fields of the report, spelled out: personalized search and consent."""
    async with open_gateway(tmp_path / "var", **BASE, edge_default_max_age=60) as gw:
        await _seed(gw)
        alice, bob, anonymous, _nobody = CALLERS
        search = '{ search(text: "floral summer", first: 3) { item { id } score reason } }'
        a = await _ask(gw, search, alice)
        assert a.json()["data"]["search"][0]["reason"].endswith("tuned to your taste")
        assert a.headers["cache-control"].startswith("private, ")
        for other in (bob, anonymous):
            r = await _ask(gw, search, other)
            assert r.json() != a.json(), other.name
            assert r.headers["cache-control"].startswith("private, ")
        # Not personalized: the same for everyone, and shared.
        generic = '{ search(text: "floral summer", first: 3, personalized: false) { item { id } } }'
        r = await _ask(gw, generic, alice)
        assert r.headers["cache-control"].startswith("public, ")
        assert (await _ask(gw, generic, bob)).headers["x-cache"] == "HIT"

        consent = "{ consent { personalization tracking } }"
        a = await _ask(gw, consent, alice)
        assert a.json() == {"data": {"consent": {"personalization": True, "tracking": True}}}
        assert a.headers["cache-control"].startswith("private, ")
        b = await _ask(gw, consent, bob)
        assert b.json() == {"data": {"consent": {"personalization": False, "tracking": True}}}
        assert (await _ask(gw, consent, anonymous)).json() == {"data": {"consent": None}}


async def test_the_segment_alone_is_segment_scoped_not_private(tmp_path: Path) -> None:
    """Reading only the caller's segment (``viewer_segment``) keeps the answer per segment: it
    is not made PRIVATE as a read of the caller would."""
    async with open_gateway(tmp_path / "var", **BASE) as gw:
        await _seed(gw)
        query = "{ segmentRecommendations(first: 2) { item { id } } }"
        r = await _ask(gw, query, CALLERS[3])
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"].startswith("public, ")
        # The first answer taught the layer the operation's scope; the second is stored by it.
        r = await _ask(gw, query, CALLERS[3])
        assert _stored_scope(gw, r) is CacheScope.SEGMENT


# ----------------------------------------------------------------------------------- item 11
RECS = "{ me { recommendations(first: 3) { item { id } reason } } }"


def _personalized(body: Any) -> bool:
    recs = body["data"]["me"]["recommendations"]
    assert recs, body
    return not any(r["reason"].endswith("(personalization off)") for r in recs)


@pytest.mark.parametrize("signal", ["sec-gpc", "dnt"])
async def test_privacy_signals_are_part_of_the_cache_key(tmp_path: Path, signal: str) -> None:
    async with open_gateway(tmp_path / "var", **BASE) as gw:
        await _seed(gw)
        alice = CALLERS[0]
        plain = await _ask(gw, RECS, alice)
        assert _personalized(plain.json())
        assert plain.headers["cache-control"].startswith("private, ")
        vary = {v.strip().lower() for v in plain.headers["vary"].split(",")}
        assert {"sec-gpc", "dnt"} <= vary
        # Cached without the signal: never served, personalized, to a request that sends it.
        opted = await _ask(gw, RECS, alice, **{signal: "1"})
        assert not _personalized(opted.json()), opted.text
        assert opted.headers["x-cache"] != "HIT"
        # And the reverse: cached with the signal, never served to a request without it.
        await _purge(gw)
        opted = await _ask(gw, RECS, alice, **{signal: "1"})
        assert not _personalized(opted.json())
        plain = await _ask(gw, RECS, alice)
        assert _personalized(plain.json()), plain.text
        # Each keeps its own cached answer.
        assert (await _ask(gw, RECS, alice)).headers["x-cache"] == "HIT"
        again = await _ask(gw, RECS, alice, **{signal: "1"})
        assert again.headers["x-cache"] == "HIT" and not _personalized(again.json())


async def test_personalized_search_follows_the_signal_on_cache_hits(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", **BASE, edge_default_max_age=60) as gw:
        await _seed(gw)
        search = '{ search(text: "floral summer", first: 3) { item { id } reason } }'
        r = await _ask(gw, search, CALLERS[0])
        assert r.json()["data"]["search"][0]["reason"].endswith("tuned to your taste")
        r = await _ask(gw, search, CALLERS[0], **{"sec-gpc": "1"})
        assert not r.json()["data"]["search"][0]["reason"].endswith("tuned to your taste")


# ------------------------------------------------------------------- item 13: Vary: Cookie
async def test_cookie_authenticated_answers_vary_on_cookie(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", **BASE, auth_cookie="tailor_session") as gw:
        await _seed(gw)
        answers = {}
        for user in ("alice", "bob"):
            r = await gw.client.get(
                "/graphql",
                params={"query": "{ me { id } }"},
                headers={"cookie": f"tailor_session={gw.token(user)}", "x-tailor-csrf": "1"},
            )
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"].startswith("private, ")
            vary = {v.strip().lower() for v in r.headers["vary"].split(",")}
            assert "cookie" in vary, r.headers["vary"]
            answers[user] = r.json()
        assert answers == {
            "alice": {"data": {"me": {"id": "alice"}}},
            "bob": {"data": {"me": {"id": "bob"}}},
        }


# -------------------------------------------------------------- item 13: the cost model
def _aliased_recommendations(n: int) -> str:
    calls = " ".join(
        f"r{i}: recommendations(first: 10) {{ item {{ id title }} score }}" for i in range(n)
    )
    return f"{{ me {{ {calls} }} }}"


# The README's GraphQL examples (section "GraphQL examples"), queries and mutations.
README_OPERATIONS = [
    '{ trending(first: 5, category: "Dresses") { item { id title price } score reason source } }',
    '{ items(ids: ["i00001", "i00002"]) { id title categories price available } }',
    "{ me { id anonymous traits profile { events engagementScore recencyDays frequency monetary"
    " sessions views7d conversionRate lastChannel topCategories { category score }"
    " features { name value } } } }",
    '{ user(id: "u00007") { id traits profile { frequency monetary } } }',
    'mutation { track(events: [{ messageId: "m-1", type: view, itemId: "i00042", sessionId: "s-1" }]) {'
    " accepted duplicates conflicts rejected results { index status field reason } } }",
    'mutation { identify(anonymousId: "a-123", traits: { newsletter: true }) { status } }',
    "{ me { recommendations(first: 10, diversity: 0.3, maxPerCategory: 3,"
    ' filter: { priceMax: 100, excludeCategories: ["Bags"], availableOnly: true },'
    ' context: { itemId: "i00042" }) { item { id title } score reason source } } }',
    "{ me { recommendations(first: 5, strategy: CONTENT) { item { title } reason } } }",
    '{ similarItems(itemId: "i00042", first: 5, filter: { categories: ["Dresses"] }) { item { title } score } }',
    '{ search(text: "light summer dress", first: 5) { item { title price } score reason } }',
    "{ segmentRecommendations(first: 10) { item { id title } reason } }",
    "{ me { conversionScore } }",
    "{ me { segment { id name } segments { id name kind } } }",
    "{ segments { id name description kind size traits { name value zScore } } }",
]
# A page that asks for several expensive things at once, as a client home page would.
HOME_PAGE = (
    "{ me { id recommendations(first: 10) { item { id title price } score reason source }"
    " conversionScore segment { id name } }"
    ' search(text: "summer dress", first: 5) { item { id title } score reason }'
    ' similarItems(itemId: "i1", first: 5) { item { id title } score }'
    " segmentRecommendations(first: 10) { item { id title } reason }"
    " trending(first: 5) { item { id title } score } }"
)


def _cost_errors(query: str) -> list[str]:
    limits = OperationLimits()
    return [
        e.message
        for e in measure(SCHEMA, parse_limited(query, limits), limits)
        if e.code == MAX_COST
    ]


@pytest.mark.parametrize("query", [*README_OPERATIONS, HOME_PAGE])
def test_normal_client_queries_pass_the_cost_limit(query: str) -> None:
    assert measure(SCHEMA, parse_limited(query, OperationLimits()), OperationLimits()) == []


def test_expensive_fields_weigh_what_they_cost() -> None:
    (message,) = _cost_errors(_aliased_recommendations(24))
    assert message.startswith("the operation has estimated cost ")
    assert "the limit is 5000" in message
    assert "24 x User.recommendations" in message
    # Cheap fields still cost 1 each: 24 aliased `id`s are nothing.
    assert _cost_errors("{ me { " + " ".join(f"a{i}: id" for i in range(24)) + " } }") == []


async def test_24_aliased_recommendations_are_refused(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", **BASE) as gw:
        await _seed(gw)
        alice = {"authorization": f"Bearer {gw.token('alice')}"}
        r = await gw.client.post(
            "/graphql", json={"query": _aliased_recommendations(24)}, headers=alice
        )
        assert r.status_code == 400, r.text
        assert code_of(r.json()) == MAX_COST
        assert "User.recommendations" in r.json()["errors"][0]["message"]
        # One call, and a whole home page, still pass.
        r = await gw.client.post(
            "/graphql", json={"query": _aliased_recommendations(1)}, headers=alice
        )
        assert r.status_code == 200 and "errors" not in r.json(), r.text
        r = await gw.client.post("/graphql", json={"query": HOME_PAGE}, headers=alice)
        assert r.status_code == 200 and code_of(r.json()) is None, r.text

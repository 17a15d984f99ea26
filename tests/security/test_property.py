"""Property: whatever query is generated over the schema (valid or not, any arguments, any
nesting, aliases, fragments), the gateway never answers 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.security.auth import issue_token
from resolvers.schema import build_schema
from tests.conftest import SECRET

SCHEMA = build_schema()._schema
NAMES = st.from_regex(r"[a-z][a-zA-Z0-9_]{0,8}", fullmatch=True)
WEIRD_TEXT = st.text(max_size=40) | st.sampled_from(
    ["i1", "' OR 1=1 --", "../../etc", "\u0000", "a" * 200]
)


@st.composite
def value_for(draw: st.DrawFn, type_: Any, depth: int = 0) -> str:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if draw(st.integers(0, 12)) == 0:  # sometimes the wrong kind of value, or null
        return draw(st.sampled_from(["null", "1", '"x"', "[]", "{}", "true", "1.5", "$undefined"]))
    if isinstance(type_, GraphQLList):
        items = draw(st.lists(value_for(type_.of_type, depth + 1), max_size=4 if depth < 2 else 0))
        return "[" + ", ".join(items) + "]"
    if isinstance(type_, GraphQLEnumType):
        return draw(st.sampled_from([*type_.values, "NOPE"]))
    if isinstance(type_, GraphQLInputObjectType):
        fields = (
            draw(st.lists(st.sampled_from(sorted(type_.fields)), max_size=3, unique=True))
            if type_.fields
            else []
        )
        return (
            "{"
            + ", ".join(f"{f}: {draw(value_for(type_.fields[f].type, depth + 1))}" for f in fields)
            + "}"
        )
    name = type_.name if isinstance(type_, GraphQLScalarType) else ""
    if name == "Int":
        return str(draw(st.integers(-(2**40), 2**40) | st.sampled_from([0, 1, 100, 101, 2**31])))
    if name == "Float":
        return repr(draw(st.floats(allow_nan=False, allow_infinity=False, width=32)))
    if name == "Boolean":
        return draw(st.sampled_from(["true", "false"]))
    return json.dumps(draw(WEIRD_TEXT))


@st.composite
def selection_set(draw: st.DrawFn, type_: Any, depth: int = 0) -> str:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType):
        return ""
    names = sorted(named.fields)
    picks = draw(st.lists(st.sampled_from([*names, "__typename", "nope"]), min_size=1, max_size=4))
    parts = []
    for name in picks:
        field = named.fields.get(name)
        alias = f"{draw(NAMES)}: " if draw(st.integers(0, 5)) == 0 else ""
        args = ""
        if field is not None and field.args:
            chosen = draw(
                st.lists(st.sampled_from(sorted(field.args)), max_size=len(field.args), unique=True)
            )
            if chosen:
                args = (
                    "("
                    + ", ".join(f"{a}: {draw(value_for(field.args[a].type))}" for a in chosen)
                    + ")"
                )
        sub = ""
        if field is not None and isinstance(get_named_type(field.type), GraphQLObjectType):
            sub = (
                " { __typename }"
                if depth >= 5
                else " { " + draw(selection_set(field.type, depth + 1)) + " }"
            )
        parts.append(f"{alias}{name}{args}{sub}")
    return " ".join(parts)


@st.composite
def documents(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["query", "query", "mutation", "fragment", "garbage"]))
    if kind == "garbage":
        return draw(
            st.text(max_size=200)
            | st.sampled_from(["{", "}", "{ me { ", "query {}", "\x00", "{ ...F }"])
        )
    if kind == "mutation":
        return "mutation { " + draw(selection_set(SCHEMA.mutation_type)) + " }"
    body = draw(selection_set(SCHEMA.query_type))
    if kind == "fragment":
        return "{ ...F } fragment F on Query { " + body + " }"
    return "{ " + body + " }"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("prop") / "var"
    app = create_app(data_dir=data_dir, jwt_secret=SECRET, rate_limit_per_s=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _check(client: TestClient, doc: str, who: str | None, strict: bool, via_get: bool) -> None:
    headers = {"accept": "application/graphql-response+json" if strict else "application/json"}
    if who == "user":
        headers["authorization"] = f"Bearer {issue_token(SECRET, 'prop-user')}"
    elif who == "admin":
        headers["authorization"] = f"Bearer {issue_token(SECRET, 'prop-admin', scopes=['admin'])}"
    if via_get:
        r = client.get("/graphql", params={"query": doc}, headers=headers)
    else:
        r = client.post("/graphql", json={"query": doc}, headers=headers)
    assert r.status_code < 500, (r.status_code, doc, r.text[:500])
    assert "Traceback" not in r.text


ARGS = {
    "doc": documents(),
    "who": st.sampled_from([None, "user", "admin"]),
    "strict": st.booleans(),
    "via_get": st.booleans(),
}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(**ARGS)
def test_generated_queries_never_answer_5xx(
    client: TestClient, doc: str, who: str | None, strict: bool, via_get: bool
) -> None:
    _check(client, doc, who, strict, via_get)


@pytest.mark.slow
@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(**ARGS)
def test_many_generated_queries_never_answer_5xx(
    client: TestClient, doc: str, who: str | None, strict: bool, via_get: bool
) -> None:
    _check(client, doc, who, strict, via_get)

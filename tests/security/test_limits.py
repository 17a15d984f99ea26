"""Operation limits measured on the real schema, and their settings end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from graphql import get_introspection_query

from gateway.graphql.limits import (
    MAX_ALIASES,
    MAX_COST,
    MAX_DEPTH,
    MAX_DIRECTIVES,
    MAX_DUPLICATE_FIELDS,
    MAX_ROOT_FIELDS,
    MAX_TOKENS,
    LimitExceeded,
    OperationLimits,
    measure,
    parse_limited,
)
from resolvers.schema import build_schema
from tests.security.conftest import NORMAL_QUERY, code_of, open_gateway

SCHEMA = build_schema()._schema
LIMITS = OperationLimits()


def codes(query: str, limits: OperationLimits = LIMITS) -> list[str]:
    return [e.code for e in measure(SCHEMA, parse_limited(query, limits), limits)]


def test_typical_queries_and_graphiql_introspection_pass() -> None:
    assert codes(NORMAL_QUERY) == []
    assert (
        codes("{ me { id traits profile { events topCategories(first: 5) { category score } } } }")
        == []
    )
    assert codes(get_introspection_query(descriptions=True)) == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ me { profile { topCategories { category } } } }", MAX_DEPTH),
        ("{ me { a: id b: id c: id } }", MAX_ALIASES),
        ("{ a: me { id } b: me { id } c: me { id } }", MAX_ROOT_FIELDS),
        ("{ me @include(if: true) @skip(if: false) { id @include(if: true) } }", MAX_DIRECTIVES),
        ("{ me { id id id } }", MAX_DUPLICATE_FIELDS),
        ("{ trending(first: 3) { item { id title } } }", MAX_COST),
    ],
)
def test_each_limit_has_its_code(query: str, code: str) -> None:
    tight = OperationLimits(
        max_depth=3,
        max_aliases=2,
        max_root_fields=2,
        max_directives=2,
        max_duplicate_fields=2,
        max_cost=8,
    )
    assert code in codes(query, tight)
    assert codes(query, OperationLimits()) == []


def test_token_limit_is_enforced_by_the_parser() -> None:
    with pytest.raises(LimitExceeded) as info:
        parse_limited("{ me { id } }" * 100, OperationLimits(max_tokens=50))
    assert info.value.code == MAX_TOKENS


def test_cost_uses_first_variables_defaults_and_literal_lists() -> None:
    lim = OperationLimits(max_cost=10_000, max_first=100, default_list_size=10)

    def cost(q: str) -> int:
        m = measure(SCHEMA, parse_limited(q, lim), OperationLimits(max_cost=1, max_first=100))
        return int(next(e for e in m if e.code == MAX_COST).message.split()[5].rstrip(";"))

    assert cost("{ trending(first: 7) { score reason } }") == 1 + 7 * 2
    assert cost("{ trending(first: 10000) { score } }") == 1 + 100 * 1  # clamped to max_first
    assert cost("query ($n: Int = 4) { trending(first: $n) { score } }") == 1 + 4
    assert cost("query ($n: Int) { trending(first: $n) { score } }") == 1 + 100  # worst case
    assert cost('{ items(ids: ["a", "b", "c"]) { id title } }') == 1 + 3 * 2
    assert cost("{ trending { score } }") == 1 + 10  # no `first`: default list size


def test_fragments_are_expanded_once_and_cycles_do_not_hang() -> None:
    frags = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    doc = "{ ...F0 } " + frags + " fragment F40 on Query { me { id } }"
    found = codes(doc, OperationLimits(max_tokens=0))
    assert MAX_COST in found and MAX_ROOT_FIELDS in found  # 2**40 copies, measured in linear time
    assert (
        codes("fragment A on Query { ...B } fragment B on Query { ...A me { id } } { ...A }") == []
    )


async def test_limits_are_configurable_and_can_be_turned_off(tmp_path: Path) -> None:
    bomb = "{ me { " + " ".join(f"a{i}: id" for i in range(40)) + " } }"
    async with open_gateway(tmp_path / "on", max_aliases=50, rate_limit_per_s=0) as gw:
        assert (await gw.gql(bomb)).status_code == 200
        r = await gw.gql("{ me { profile { events } } }", headers={})
        assert r.status_code == 200
    async with open_gateway(tmp_path / "tight", max_depth=2, rate_limit_per_s=0) as gw:
        r = await gw.gql("{ me { profile { events } } }")
        assert r.status_code == 400 and code_of(r.json()) == MAX_DEPTH
    async with open_gateway(tmp_path / "off", limits_enabled=False, rate_limit_per_s=0) as gw:
        assert (await gw.gql(bomb)).status_code == 200


async def test_development_allows_introspection_and_suggestions(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0) as gw:
        intro = await gw.gql("{ __schema { queryType { name } } }")
        assert intro.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
        typo = await gw.gql("{ mee { id } }")
        assert "Did you mean" in typo.json()["errors"][0]["message"]


async def test_production_masks_unexpected_errors_with_a_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_gateway(tmp_path / "var", production=True, rate_limit_per_s=0) as gw:

        def broken(*_a: object, **_k: object) -> None:
            raise ZeroDivisionError("secret internals at /srv/tailor")

        gw.services.trending.top = broken
        with caplog.at_level(logging.ERROR, logger="tailor.graphql"):
            r = await gw.gql(NORMAL_QUERY)
        err = r.json()["errors"][0]
        assert err["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        request_id = err["extensions"]["requestId"]
        assert request_id in err["message"]
        assert (
            "secret internals" not in r.text
            and "Traceback" not in r.text
            and "ZeroDivision" not in r.text
        )
        assert any(request_id in rec.getMessage() and rec.exc_info for rec in caplog.records)

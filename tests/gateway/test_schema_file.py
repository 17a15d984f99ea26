"""The schema for codegen: `tailor schema` (SDL and --json), the committed schema.graphql equal
to what a running gateway serves, and the enums of closed value sets (wire values unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from graphql import (
    GraphQLSchema,
    build_client_schema,
    lexicographic_sort_schema,
    print_schema,
)
from graphql import build_schema as parse_sdl

from gateway.cli.main import main
from profiles.types import BUILTIN_EVENT_TYPES, CHANNELS
from recommend.engine import DEFAULT_WEIGHTS
from resolvers.schema import build_schema
from resolvers.types import Channel, EventType, RecommendationSource
from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schema.graphql"
FIX = "run `tailor schema -o schema.graphql` and commit it"

INTROSPECTION = """query IntrospectionQuery { __schema {
  queryType { name } mutationType { name } subscriptionType { name }
  types { ...FullType }
  directives { name description locations args { ...InputValue } }
} }
fragment FullType on __Type {
  kind name description specifiedByURL
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef }
    isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }"""


def printed(schema: GraphQLSchema) -> str:
    """The schema printed in a fixed order (introspection lists types in its own order)."""
    return print_schema(lexicographic_sort_schema(schema))


def test_the_committed_schema_is_the_built_schema() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == build_schema().as_str() + "\n", FIX


async def test_the_committed_schema_is_what_a_running_gateway_serves(gateway: Gateway) -> None:
    r = await gateway.client.post("/graphql", json={"query": INTROSPECTION})
    assert r.status_code == 200, r.text
    served = printed(build_client_schema(r.json()["data"]))
    committed = printed(parse_sdl(SCHEMA_FILE.read_text(encoding="utf-8")))
    assert served == committed, FIX


def test_tailor_schema_prints_sdl_and_introspection(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["schema"]) == 0
    sdl = capsys.readouterr().out
    assert sdl == SCHEMA_FILE.read_text(encoding="utf-8")
    assert main(["schema", "--json"]) == 0
    intro = json.loads(capsys.readouterr().out)
    assert printed(build_client_schema(intro)) == printed(parse_sdl(sdl))
    out = tmp_path / "schema.json"
    assert main(["schema", "--json", "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == intro


def test_enums_match_the_domain_lists() -> None:
    assert [e.value for e in EventType if e is not EventType.custom] == list(BUILTIN_EVENT_TYPES)
    assert [c.value for c in Channel] == list(CHANNELS)
    sources = {s.value for s in RecommendationSource}
    assert set(DEFAULT_WEIGHTS) | {"catalog", "search"} == sources
    sdl = SCHEMA_FILE.read_text(encoding="utf-8")
    assert "  type: EventType!\n" in sdl
    assert "  channel: Channel = null\n" in sdl
    assert "  source: RecommendationSource!\n" in sdl
    assert "  lastChannel: Channel\n" in sdl


TRACK = (
    "mutation($e: [EventInput!]!) { track(events: $e) { accepted rejected results { reason } } }"
)


async def test_wire_values_are_unchanged(gateway: Gateway) -> None:
    """Clients that sent strings in variables keep working: the enum values are the strings."""
    r = await gateway.gql(
        TRACK,
        {
            "e": [
                {
                    "messageId": "m1",
                    "type": "search",
                    "channel": "mobile",
                    "properties": {"query": "x"},
                }
            ]
        },
        user="u1",
    )
    assert r.json()["data"]["track"]["accepted"] == 1, r.text
    r = await gateway.gql(
        "{ trending(first: 1) { source } me { profile { lastChannel } } }", user="u1"
    )
    assert r.json()["data"]["me"]["profile"]["lastChannel"] == "mobile", r.text
    # Values outside the enum are refused by GraphQL itself, with the field named.
    r = await gateway.gql(TRACK, {"e": [{"messageId": "m2", "type": "teleport"}]}, user="u1")
    assert "EventType" in r.json()["errors"][0]["message"]


async def test_custom_event_types_go_through_custom_type(tmp_path: Path) -> None:
    import httpx

    from gateway.app import create_app
    from tests.conftest import SECRET, FakeClock

    app = create_app(
        data_dir=tmp_path / "var",
        jwt_secret=SECRET,
        encoder="hashing",
        clock=FakeClock(),
        custom_event_types=("wishlist",),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        headers = {"x-anonymous-id": "visitor-1"}

        async def track(event: dict[str, object]) -> dict[str, object]:
            r = await c.post(
                "/graphql", json={"query": TRACK, "variables": {"e": [event]}}, headers=headers
            )
            return dict(r.json())

        ok = await track({"messageId": "w1", "type": "custom", "customType": "wishlist"})
        assert ok["data"]["track"]["accepted"] == 1  # type: ignore[index]
        unknown = await track({"messageId": "w2", "type": "custom", "customType": "teleport"})
        assert unknown["data"]["track"]["rejected"] == 1  # type: ignore[index]
        missing = await track({"messageId": "w3", "type": "custom"})
        assert missing["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"  # type: ignore[index]
        both = await track({"messageId": "w4", "type": "view", "customType": "wishlist"})
        assert "customType" in both["errors"][0]["message"]  # type: ignore[index]

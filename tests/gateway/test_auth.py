"""Bearer JWT auth and the admin/service scope on user(id)."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from gateway.security.auth import issue_token
from tests.conftest import SECRET, Gateway

ME = "{ me { id anonymous } }"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _me(gw: Gateway, token: str) -> tuple[int, dict[str, object]]:
    r = await gw.client.post(
        "/graphql", json={"query": ME}, headers={"authorization": f"Bearer {token}"}
    )
    return r.status_code, r.json()


async def test_valid_token_identifies_the_user(gateway: Gateway) -> None:
    status, body = await _me(gateway, issue_token(SECRET, "u1"))
    assert status == 200
    assert body == {"data": {"me": {"id": "u1", "anonymous": False}}}


async def test_anonymous_id_header(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": ME}, headers={"x-anonymous-id": "anon-7"}
    )
    assert r.json() == {"data": {"me": {"id": "anon-7", "anonymous": True}}}


async def test_invalid_anonymous_id_is_401(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": ME}, headers={"x-anonymous-id": "a b'; drop"}
    )
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("make_token", "fragment"),
    [
        (lambda: issue_token(SECRET, "u1", ttl_s=-10), "expired"),
        (lambda: issue_token("another-secret-of-enough-length!!", "u1"), "signature"),
        (lambda: jwt.encode({"sub": "u1"}, SECRET, algorithm="HS256"), "exp"),
        (lambda: jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"), "sub"),
        (
            lambda: (
                _b64({"alg": "none", "typ": "JWT"})
                + "."
                + _b64({"sub": "u1", "exp": 4102444800})
                + "."
            ),
            "invalid token",
        ),
        (
            lambda: jwt.encode(
                {"sub": "u1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"
            ),
            "invalid token",
        ),
        (lambda: "not-a-jwt", "invalid token"),
    ],
    ids=["expired", "wrong-signature", "no-exp", "no-sub", "alg-none", "alg-confusion", "garbage"],
)
async def test_bad_tokens_are_401(gateway: Gateway, make_token, fragment: str) -> None:  # type: ignore[no-untyped-def]
    status, body = await _me(gateway, make_token())
    assert status == 401
    err = body["errors"][0]  # type: ignore[index]
    assert err["extensions"]["code"] == "UNAUTHENTICATED"
    assert fragment in err["message"]


async def test_non_bearer_scheme_is_401(gateway: Gateway) -> None:
    r = await gateway.client.post(
        "/graphql", json={"query": ME}, headers={"authorization": "Basic dTE6cA=="}
    )
    assert r.status_code == 401


async def test_user_by_id_needs_admin_or_service_scope(gateway: Gateway) -> None:
    gateway.services.merge_traits("u2", {"tier": "gold"})
    q = '{ user(id: "u2") { id traits } }'
    denied = await gateway.gql(q, user="u1")
    assert denied.status_code == 200
    err = denied.json()["errors"][0]
    assert err["extensions"]["code"] == "FORBIDDEN"
    assert "admin or service scope" in err["message"]
    assert denied.json()["data"] == {"user": None}
    anonymous = await gateway.gql(q)
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for scope in ("admin", "service"):
        ok = await gateway.gql(q, user="ops", scopes=(scope,))
        assert ok.json() == {"data": {"user": {"id": "u2", "traits": {"tier": "gold"}}}}


async def test_user_may_read_themselves_by_id(gateway: Gateway) -> None:
    gateway.services.merge_traits("u1", {"tier": "silver"})
    r = await gateway.gql('{ user(id: "u1") { traits } }', user="u1")
    assert r.json() == {"data": {"user": {"traits": {"tier": "silver"}}}}


async def test_unknown_user_is_null_for_admin(gateway: Gateway) -> None:
    r = await gateway.gql('{ user(id: "ghost") { id } }', user="ops", scopes=("admin",))
    assert r.json() == {"data": {"user": None}}

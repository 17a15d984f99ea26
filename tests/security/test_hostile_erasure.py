"""Issue 21, items 6, 12 and part of 13: erasure reaches running gateways (caches, segments,
sizes, old tokens), validly signed tokens with odd claims are clean 401s on every route, and
production refuses short secrets and over-long token lifetimes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import pytest_asyncio

from gateway.http import HTTPProblem, authenticate
from gateway.models import refresh_erasures
from gateway.security.auth import issue_token
from gateway.settings import SettingsError, load_settings
from tests.conftest import SECRET, FakeClock, Gateway
from tests.security.conftest import open_gateway

ME = "{ me { id profile { events } } }"


# ---------------------------------------------------------------------- item 12: odd claims
def _signed(**claims: Any) -> str:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iat": now, "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not ...}, SECRET, algorithm="HS256")


ODD_CLAIMS: dict[str, dict[str, Any]] = {
    "sub-with-space": {"sub": "john doe"},
    "sub-int": {"sub": 12345},
    "sub-list": {"sub": ["alice"]},
    "sub-empty": {"sub": ""},
    "sub-too-long": {"sub": "a" * 5000},
    "sub-control-char": {"sub": "alice\n"},
    "sub-anonymous-namespace": {"sub": "anon:visitor-1"},
    "scope-int": {"scope": 5},
    "scope-object": {"scope": {"admin": True}},
    "scope-list-of-ints": {"scope": [1, 2]},
    "scope-list-with-null": {"scope": ["admin", None]},
    "scope-bool": {"scope": True},
    "scopes-int": {"scopes": 7},
    "iat-string": {"iat": "yesterday"},
    "iat-future": {"iat": int(time.time()) + 86_400},
    "exp-string": {"exp": "never"},
    "exp-huge": {"exp": 10**30},
    "exp-float-huge": {"exp": 1e308},
    "exp-infinity": {"exp": float("inf")},
    "exp-bigint": {"exp": 10**400},
    "exp-numeric-string": {"exp": str(int(time.time()) + 600)},
    "exp-bool": {"exp": True},
    "iat-nan": {"iat": float("nan")},
    "iat-bool": {"iat": True},
    "iat-list": {"iat": [1]},
}

ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/graphql", {"content": orjson.dumps({"query": ME})}),
    ("GET", "/graphql", {"params": {"query": ME}}),
    (
        "POST",
        "/graphql",
        {"content": orjson.dumps({"query": "{ trending(first: 2) { score } }"})},
    ),
    (
        "POST",
        "/v1/events",
        {"content": orjson.dumps([{"messageId": "odd-1", "type": "view", "itemId": "i1"}])},
    ),
    ("GET", "/v1/ping", {}),
    ("POST", "/admin/purge", {"content": b'{"tags": ["x"]}'}),
    ("GET", "/healthz", {}),
    ("GET", "/readyz", {}),
]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def prod(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    data_dir = tmp_path_factory.mktemp("odd-claims") / "var"
    async with open_gateway(data_dir, production=True, rate_limit_per_s=0) as gw:
        yield gw


AUTHENTICATED_PATHS = ("/graphql", "/v1/events", "/admin/purge")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("claims", list(ODD_CLAIMS.values()), ids=list(ODD_CLAIMS))
async def test_odd_claims_never_5xx(prod: Gateway, claims: dict[str, Any]) -> None:
    token = _signed(**claims)
    for method, path, kw in ROUTES:
        headers = {"content-type": "application/json"}
        baseline = (await prod.client.request(method, path, headers=headers, **kw)).status_code
        # twice: the second request meets whatever the first one cached
        for _ in range(2):
            r = await prod.client.request(
                method, path, headers={**headers, "authorization": f"Bearer {token}"}, **kw
            )
            if path in AUTHENTICATED_PATHS:
                assert r.status_code == 401, (method, path, r.status_code, r.text[:300])
                err = r.json()["errors"][0]
                assert err["extensions"]["code"] == "UNAUTHENTICATED"
                assert "token" in err["message"]
                assert r.headers["www-authenticate"].startswith("Bearer")
            else:  # routes that read no credentials answer as they do without any
                assert r.status_code == baseline, (method, path, r.status_code, r.text[:300])
    ok = await prod.gql(ME, user="alice")
    assert ok.status_code == 200 and ok.json()["data"]["me"]["id"] == "alice"


async def test_odd_scope_with_rate_limits_on(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=1000, rate_limit_burst=1000) as gw:
        for claims in (ODD_CLAIMS["scope-int"], ODD_CLAIMS["scope-bool"]):
            token = _signed(**claims)
            for path in ("/graphql", "/v1/ping"):
                r = await gw.client.get(
                    path, params={"query": ME}, headers={"authorization": f"Bearer {token}"}
                )
                assert r.status_code < 500, (path, r.status_code, r.text[:200])


# ---------------------------------------------------------------------- item 6: erasure
ME_ALL = "{ me { id profile { events } segment { id } segments { id } } }"
ME_PROFILE = "{ me { id profile { events } } }"
SIZES = "{ segments { id size } }"


async def _populate(gw: Gateway) -> None:
    """Items, 14 users with varied histories, alice with a linked anonymous history; segments
    trained on them (so alice is a member)."""
    from storage.types import ItemRecord

    now = gw.clock.now
    cats = ("Shoes", "Bags", "Hats")
    gw.services.store.upsert_items(
        [
            ItemRecord(
                f"i{k}",
                f"Item {k}",
                f"item {k}",
                (cats[k % 3],),
                price=10.0 + k,
                created_at=now,
                updated_at=now,
            )
            for k in range(1, 10)
        ]
    )
    events = []
    for u in range(14):
        user = "alice" if u == 0 else f"user{u}"
        for n in range(1 + u % 5):
            kind = ("view", "click", "purchase")[(u + n) % 3]
            events.append(
                {
                    "messageId": f"{user}-{n}",
                    "userId": user,
                    "type": kind,
                    "itemId": f"i{1 + (u * 3 + n) % 9}",
                    "timestamp": now - 3600 + n,
                    **({"properties": {"price": 20.0 + u}} if kind == "purchase" else {}),
                }
            )
    service = {"authorization": f"Bearer {gw.token('collector', 'service')}"}
    r = await gw.client.post("/v1/events", json=events, headers=service)
    assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
    anon = {"x-anonymous-id": "anon-alice"}
    r = await gw.client.post(
        "/v1/events",
        json=[{"messageId": "anon-1", "type": "view", "itemId": "i4", "timestamp": now}],
        headers=anon,
    )
    assert r.status_code == 200, r.text
    r = await gw.gql(
        'mutation { identify(anonymousId: "anon-alice") { status } }', user="alice", headers=anon
    )
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    await asyncio.to_thread(gw.services.segments.train)


async def _me(gw: Gateway, token: str, method: str = "POST") -> httpx.Response:
    h = {"authorization": f"Bearer {token}"}
    if method == "GET":
        return await gw.client.get("/graphql", params={"query": ME_ALL}, headers=h)
    return await gw.client.post("/graphql", json={"query": ME_ALL}, headers=h)


async def _cached_profile(gw: Gateway, token: str) -> httpx.Response:
    """A GET the response cache keeps (``private, max-age=30``, tagged ``user:<key>``)."""
    h = {"authorization": f"Bearer {token}"}
    return await gw.client.get("/graphql", params={"query": ME_PROFILE}, headers=h)


def _profile_gone(r: httpx.Response) -> bool:
    """No profile in the answer, or the old token refused (401)."""
    return r.status_code == 401 or r.json()["data"]["me"]["profile"] is None


async def _warm(gw: Gateway, token: str) -> dict[str, Any]:
    """Every tier warm: the response cache (a GET, answered from it the second time) and the
    profile cache (POST)."""
    for _ in range(50):  # the answer is stored right after the first one is sent
        r = await _cached_profile(gw, token)
        assert r.json()["data"]["me"]["profile"]["events"] >= 2
        if r.headers["x-cache"] == "HIT":
            break
        await asyncio.sleep(0.01)
    assert r.headers["x-cache"] == "HIT"
    me: dict[str, Any] = (await _me(gw, token)).json()["data"]["me"]
    assert me["profile"]["events"] >= 2 and me["segment"] is not None, me
    return me


async def _sizes(gw: Gateway) -> dict[str, int]:
    segs = (await gw.gql(SIZES)).json()["data"]["segments"]
    return {s["id"]: s["size"] for s in segs}


def _old_token(gw: Gateway, user: str) -> str:
    # issued a minute before "now" on the gateway's clock (which runs 30 s behind the wall)
    return issue_token(SECRET, user, now=gw.clock.now - 60)


@contextlib.asynccontextmanager
async def _populated(data_dir: Path, erasure_poll_s: float) -> AsyncIterator[Gateway]:
    # The app clock sits just behind the wall clock: tokens are checked against the wall clock
    # (PyJWT), erasure times come from the app clock, so both must tell about the same time.
    clock = FakeClock(time.time() - 30)
    async with open_gateway(
        data_dir,
        clock=clock,
        encoder="hashing",
        rate_limit_per_s=0,
        erasure_poll_s=erasure_poll_s,
    ) as gw:
        await _populate(gw)
        yield gw


@pytest_asyncio.fixture
async def live(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The erasure poller runs every 50 ms (the default is 1 s)."""
    async with _populated(tmp_path / "var", 0.05) as gw:
        yield gw


@pytest_asyncio.fixture
async def still(tmp_path: Path) -> AsyncIterator[Gateway]:
    """The erasure poller never runs on its own: the test takes its step by hand."""
    async with _populated(tmp_path / "var", 3600.0) as gw:
        yield gw


def _forget_in_another_process(data_dir: Path, user: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "TAILOR_DATA_DIR": str(data_dir),
        "TAILOR_JWT_SECRET": SECRET,
        "TAILOR_ENCODER": "hashing",
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "forget", user],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out: dict[str, Any] = json.loads(done.stdout)
    return out


async def test_erasure_in_another_process_reaches_the_running_gateway(live: Gateway) -> None:
    gw = live
    old = _old_token(gw, "alice")
    seg = (await _warm(gw, old))["segment"]["id"]
    sizes_before = await _sizes(gw)
    assert gw.services.segments.segment_of("alice") == seg

    receipt = await asyncio.to_thread(_forget_in_another_process, gw.data_dir, "alice")
    erased = time.monotonic()
    assert receipt["userId"] == "alice" and receipt["counts"]["store.events"] >= 2
    assert b"alice" not in b"".join(p.read_bytes() for p in gw.data_dir.glob("tailor.db*"))

    # The running gateway learns of it through the store, within the poll interval: measured.
    fresh = issue_token(SECRET, "alice", now=time.time() + 1)  # after the erasure (whole seconds)
    while True:
        me = (await _me(gw, fresh)).json()["data"]["me"]
        if (
            me["profile"] is None
            and me["segment"] is None
            and _profile_gone(await _cached_profile(gw, old))
        ):
            break
        assert time.monotonic() - erased < 2.0, f"erasure not applied after 2 s: {me}"
        await asyncio.sleep(0.01)
    delay = time.monotonic() - erased
    assert delay < 2.0  # erasure_poll_s is 0.05 here; the default is 1 s
    for method in ("POST", "GET"):
        got = (await _me(gw, fresh, method)).json()
        assert "data" in got, got
        me = got["data"]["me"]
        assert me == {"id": "alice", "profile": None, "segment": None, "segments": []}, me
    # segment membership and sizes
    assert gw.services.segments.segment_of("alice") is None
    assert gw.services.segments.segment_of("anon:anon-alice") is None
    sizes_after = await _sizes(gw)
    assert sizes_after[seg] == sizes_before[seg] - 1
    assert sum(sizes_after.values()) == sum(sizes_before.values()) - 1
    # in-memory ingestion state
    assert not [k for k in gw.services.ingest._state_cache if "alice" in k]
    # tokens issued before the erasure are refused, later ones are not
    erased_at = gw.services.privacy.erased_at("alice")
    assert erased_at is not None and gw.services.privacy.erased_at("user1") is None
    with pytest.raises(HTTPProblem) as refused:
        authenticate(
            f"Bearer {old}",
            None,
            secret=SECRET,
            issuer=None,
            audience=None,
            erased_at=gw.services.privacy.erased_at,
        )
    assert refused.value.status == 401 and "erased" in refused.value.message
    while int(time.time()) <= erased_at:  # iat has whole seconds
        await asyncio.sleep(0.05)
    later = authenticate(
        f"Bearer {issue_token(SECRET, 'alice')}",
        None,
        secret=SECRET,
        issuer=None,
        audience=None,
        erased_at=gw.services.privacy.erased_at,
    )
    assert later.user_id == "alice"
    # other people are untouched
    assert gw.services.segments.segment_of("user1") is not None


async def test_one_poll_applies_it(still: Gateway) -> None:
    """The poller's one step, driven by hand: nothing applied before it, everything after."""
    gw = still
    old = _old_token(gw, "user3")
    await _warm(gw, old)
    sizes_before = await _sizes(gw)
    receipt = await asyncio.to_thread(_forget_in_another_process, gw.data_dir, "user3")
    assert receipt["counts"]["store.profiles"] == 1
    # before the step: this gateway still holds the person (what the poller is there for)
    assert gw.services.segments.segment_of("user3") is not None
    assert gw.services.privacy.erased_at("user3") is None
    assert await refresh_erasures(gw.services) == 1
    assert gw.services.segments.segment_of("user3") is None
    assert sum((await _sizes(gw)).values()) == sum(sizes_before.values()) - 1
    assert _profile_gone(await _cached_profile(gw, old))
    me = (await _me(gw, issue_token(SECRET, "user3", now=time.time() + 1))).json()["data"]["me"]
    assert me["profile"] is None and me["segment"] is None
    assert gw.services.privacy.erased_at("user3") is not None
    assert await refresh_erasures(gw.services) == 0  # applied once; the cursor moved on


async def test_in_process_erasure_is_complete_before_it_answers(live: Gateway) -> None:
    gw = live
    old = _old_token(gw, "alice")
    await _warm(gw, old)
    seg = gw.services.segments.segment_of("alice")
    sizes_before = await _sizes(gw)
    gw.clock.advance(5)
    r = await gw.gql(
        "mutation { forgetMe { counts { store count } } }",
        headers={"authorization": f"Bearer {old}"},
    )
    counts = {c["store"]: c["count"] for c in r.json()["data"]["forgetMe"]["counts"]}
    assert counts["segments"] == 1 and counts["edge.cache"] >= 1
    # at once: no poll in between
    assert gw.services.segments.segment_of("alice") is None
    assert _profile_gone(await _cached_profile(gw, old))
    sizes_after = await _sizes(gw)
    assert sizes_after[seg] == sizes_before[seg] - 1
    fresh = issue_token(SECRET, "alice", now=time.time() + 1)  # after the erasure (whole seconds)
    for method in ("POST", "GET"):
        got = (await _me(gw, fresh, method)).json()
        assert "data" in got, got
        me = got["data"]["me"]
        assert me == {"id": "alice", "profile": None, "segment": None, "segments": []}, me
    assert gw.services.privacy.erased_at("alice") == gw.clock.now
    with pytest.raises(HTTPProblem, match="erased"):
        authenticate(
            f"Bearer {old}",
            None,
            secret=SECRET,
            issuer=None,
            audience=None,
            erased_at=gw.services.privacy.erased_at,
        )
    # the admin path (forgetUser) too
    sizes_before = await _sizes(gw)
    r = await gw.gql(
        'mutation { forgetUser(id: "user2") { total } }', user="root", scopes=("admin",)
    )
    assert r.json()["data"]["forgetUser"]["total"] >= 1
    assert gw.services.segments.segment_of("user2") is None
    assert sum((await _sizes(gw)).values()) == sum(sizes_before.values()) - 1


async def test_old_token_refused_on_every_route_after_erasure(live: Gateway) -> None:
    gw = live
    old = _old_token(gw, "alice")
    gw.clock.advance(5)
    r = await gw.gql(
        'mutation { forgetUser(id: "alice") { total } }', user="root", scopes=("admin",)
    )
    assert "errors" not in r.json()
    me = await _me(gw, old)
    assert me.status_code == 401 and "erased" in me.json()["errors"][0]["message"]
    ev = await gw.client.post(
        "/v1/events",
        json=[{"messageId": "after-1", "type": "view", "itemId": "i1"}],
        headers={"authorization": f"Bearer {old}"},
    )
    assert ev.status_code == 401


# ---------------------------------------------------------------------- item 13 (part)
@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        ("short", "at least 32 bytes"),
        ("x" * 31, "at least 32 bytes"),
    ],
)
def test_production_refuses_a_weak_secret(secret: str, fragment: str) -> None:
    env = {"TAILOR_PRODUCTION": "1", "TAILOR_JWT_SECRET": secret}
    with pytest.raises(SettingsError, match=fragment):
        load_settings(environ=env)
    load_settings(environ={"TAILOR_JWT_SECRET": secret})  # development mode accepts it


def test_production_accepts_a_real_secret() -> None:
    s = load_settings(environ={"TAILOR_PRODUCTION": "1", "TAILOR_JWT_SECRET": SECRET})
    assert s.production and s.max_token_ttl_s == 30 * 86_400


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TAILOR_MAX_TOKEN_TTL_S": "0"}, "max_token_ttl_s"),
        ({"TAILOR_TOKEN_TTL_S": "7200", "TAILOR_MAX_TOKEN_TTL_S": "3600"}, "token_ttl_s"),
        ({"TAILOR_ERASURE_POLL_S": "0"}, "erasure_poll_s"),
    ],
)
def test_token_lifetime_settings_are_validated(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        load_settings(environ=env)


def _lifetime_token(lifetime_s: int, *, with_iat: bool = True) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "exp": now + lifetime_s}
    if with_iat:
        claims["iat"] = now
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(
    ("token", "status"),
    [
        (_lifetime_token(100 * 365 * 86_400), 401),
        (_lifetime_token(100 * 365 * 86_400, with_iat=False), 401),
        (_lifetime_token(31 * 86_400), 401),
        (_lifetime_token(29 * 86_400), 200),
        (_lifetime_token(29 * 86_400, with_iat=False), 200),
    ],
    ids=["100y", "100y-no-iat", "31d", "29d", "29d-no-iat"],
)
async def test_token_lifetime_has_a_maximum(prod: Gateway, token: str, status: int) -> None:
    for path in ("/graphql", "/v1/events"):
        body = (
            {"query": ME}
            if path == "/graphql"
            else [{"messageId": f"life-{token[-12:]}", "type": "view", "itemId": "i1"}]
        )
        r = await prod.client.post(path, json=body, headers={"authorization": f"Bearer {token}"})
        assert r.status_code == status, r.text[:300]
        if status == 401:
            assert "exceeds the maximum" in r.json()["errors"][0]["message"]


def test_the_maximum_is_configurable() -> None:
    two_hours = _lifetime_token(7200)
    with pytest.raises(HTTPProblem, match="exceeds the maximum of 3600s"):
        authenticate(
            f"Bearer {two_hours}", None, secret=SECRET, issuer=None, audience=None, max_ttl_s=3600
        )
    viewer = authenticate(
        f"Bearer {two_hours}", None, secret=SECRET, issuer=None, audience=None, max_ttl_s=86_400
    )
    assert viewer.user_id == "alice"


async def test_the_configured_maximum_applies_to_requests(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0, max_token_ttl_s=3600) as gw:
        r = await gw.client.post(
            "/graphql",
            json={"query": ME},
            headers={"authorization": f"Bearer {_lifetime_token(7200)}"},
        )
        assert r.status_code == 401


def test_cli_refuses_to_issue_tokens_beyond_the_maximum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.cli.main import main

    monkeypatch.setenv("TAILOR_JWT_SECRET", SECRET)
    monkeypatch.setenv("TAILOR_DATA_DIR", str(tmp_path / "var"))
    assert main(["token", "--user", "alice", "--ttl", str(100 * 365 * 86_400)]) == 2
    assert main(["token", "--user", "alice", "--ttl", "3600"]) == 0


# ---------------------------------------------------------------------- the erasure log itself
def test_the_log_names_nobody_and_reads_only_with_the_same_key() -> None:
    from profiles.privacy import PiiHasher

    ours, theirs = PiiHasher(("email",), "salt-a"), PiiHasher(("email",), "salt-b")
    sealed = ours.seal(b'["alice","anon:anon-alice"]')
    assert b"alice" not in sealed.encode() and ours.unseal(sealed) == b'["alice","anon:anon-alice"]'
    assert theirs.unseal(sealed) is None
    tampered = sealed[:30] + ("A" if sealed[30] != "A" else "B") + sealed[31:]
    assert ours.unseal(tampered) is None and ours.unseal("!!") is None and ours.unseal("") is None
    assert ours.subject("alice") != ours.subject("Alice") != theirs.subject("Alice")
    assert "alice" not in ours.subject("alice")


def test_log_rows_live_as_long_as_the_longest_token(tmp_path: Path) -> None:
    from profiles.privacy import PiiHasher, PrivacyService
    from storage import open_store

    clock = FakeClock()
    store = open_store(tmp_path / "t.db")
    try:
        hasher = PiiHasher(("email",), "salt")
        writer = PrivacyService(store, hasher=hasher, clock=clock, tombstone_s=100)
        writer.erase("gone-long-ago")
        clock.advance(150)
        writer.erase("recent")
        rows = store._reader().execute("SELECT count(*) FROM erasures").fetchone()[0]
        assert rows == 1  # the older row went with the newer erasure
        reader = PrivacyService(store, hasher=hasher, clock=clock, tombstone_s=100)
        assert reader.sync_erasures() == []  # the first read primes: nothing to apply
        assert reader.erased_at("recent") == clock.now
        assert reader.erased_at("gone-long-ago") is None
        clock.advance(10)
        writer.erase("next")
        found = reader.sync_erasures()
        assert [(f.user_id, f.profile_keys) for f in found] == [("next", ("next",))]
        assert writer.sync_erasures() == []  # primes the writer: its own erasures are applied
        writer.erase("again")
        assert writer.sync_erasures() == []  # ... and never applied twice
        clock.advance(101)
        reader.sync_erasures()
        assert reader.erased_at("next") is None  # older than any token still accepted
    finally:
        store.close()

"""Hostile identity, event and scope cases (issue 21 items 1, 2, 7 events, 9, 10).

- An ``X-Anonymous-Id`` reaches only the anonymous profile it names, never the user it was merged
  into: not by reads (``me``, recommendations, segment) nor by writes (REST, ``track``).
- ``identify`` never moves a link to another user, needs evidence to claim an unlinked id (the
  caller's own ``X-Anonymous-Id``, or a service/admin caller), and its internal message id cannot
  be blocked by a planted client event.
- Hostile event values are per-event rejections with field and reason; the valid part of the
  batch is stored.
- Traits are hashed (PII) and capped on every path, identify events included.
- A ``read`` key or token writes nothing: the scope x operation matrix.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.security.apikeys import ApiKeyRegistry
from profiles.types import IDENTITY_TAKEN
from storage.types import ItemRecord
from tests.conftest import Gateway
from tests.security.conftest import code_of, fingerprint, open_gateway

ALICE_ANON = {"x-anonymous-id": "anon-alice"}
PROFILE = "{ me { id anonymous profile { events monetary } } }"
TRACK = "mutation($e: [EventInput!]!) { track(events: $e) { accepted rejected results { status field reason } } }"
_ids = itertools.count()


def _mid(prefix: str = "m") -> str:
    return f"{prefix}-{next(_ids)}"


def _bearer(gw: Gateway, user: str, *scopes: str) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token(user, *scopes)}"}


async def _post(gw: Gateway, events: list[Any], headers: dict[str, str]) -> httpx.Response:
    return await gw.client.post("/v1/events", json=events, headers=headers)


def _view(item: str = "i1", **kw: Any) -> dict[str, Any]:
    return {"messageId": _mid("v"), "type": "view", "itemId": item, **kw}


async def _items(gw: Gateway) -> None:
    gw.services.store.upsert_items(
        [
            ItemRecord(f"i{k}", f"Item {k}", f"fine item {k}", ("Shoes",), price=10.0 + k)
            for k in range(1, 6)
        ]
    )


async def _alice_linked(gw: Gateway) -> None:
    """alice: 3 own events, then her browser's anonymous view joins through identify (sent with
    her session's X-Anonymous-Id, the evidence the new rule asks for)."""
    await _items(gw)
    own = [
        _view("i1"),
        {"messageId": _mid(), "type": "click", "itemId": "i2"},
        {"messageId": _mid(), "type": "purchase", "itemId": "i2", "properties": {"price": 10}},
    ]
    assert (await _post(gw, own, _bearer(gw, "alice"))).json()["accepted"] == 3
    assert (await _post(gw, [_view("i4")], ALICE_ANON)).json()["accepted"] == 1
    r = await gw.gql(
        'mutation { identify(anonymousId: "anon-alice") { status } }',
        user="alice",
        headers=ALICE_ANON,
    )
    assert r.json() == {"data": {"identify": {"status": "accepted"}}}, r.text
    assert gw.services.store.resolve_identity("anon-alice") == "alice"


async def _alice_profile(gw: Gateway) -> dict[str, Any]:
    r = await gw.gql("{ me { profile { events monetary } } }", user="alice")
    profile: dict[str, Any] = r.json()["data"]["me"]["profile"]
    return profile


# ---------------------------------------------------------------- 1. anonymous id -> linked user
async def test_a_linked_anonymous_id_reads_only_its_own_anonymous_profile(tmp_path: Path) -> None:
    asked: list[str] = []

    def segment_of(key: str) -> str | None:
        asked.append(key)
        return None

    async with open_gateway(tmp_path / "var", segment_of=segment_of) as gw:
        await _alice_linked(gw)
        assert (await _alice_profile(gw))["events"] == 4
        asked.clear()
        me = (await gw.gql(PROFILE, headers=ALICE_ANON)).json()["data"]["me"]
        assert me == {"id": "anon-alice", "anonymous": True, "profile": None}
        seg = await gw.gql("{ me { segment { id } segments { id } } }", headers=ALICE_ANON)
        assert "errors" not in seg.json(), seg.text
        recs = "{ me { recommendations(first: 5) { item { id } source } } }"
        linked = await gw.gql(recs, headers=ALICE_ANON)
        stranger = await gw.gql(recs, headers={"x-anonymous-id": "anon-nobody"})
        # alice's history shapes nothing the header can read: the same answer as a stranger's
        assert linked.json()["data"] == stranger.json()["data"]
        assert "alice" not in asked, asked  # no read looked up alice's segment


async def test_a_linked_anonymous_id_cannot_write_into_the_user_profile(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _alice_linked(gw)
        before = await _alice_profile(gw)
        price = {"price": 999999}
        buy = {"messageId": _mid("p"), "type": "purchase", "itemId": "i3", "properties": price}
        r = await _post(gw, [buy], ALICE_ANON)
        assert r.json()["accepted"] == 1
        events = [{"messageId": _mid("t"), "type": "purchase", "itemId": "i3", "properties": price}]
        tracked = await gw.gql(TRACK, {"e": events}, headers=ALICE_ANON)
        assert tracked.json()["data"]["track"]["accepted"] == 1
        assert await _alice_profile(gw) == before  # monetary not raised, no new events
        # ... the traffic built a fresh anonymous profile instead
        me = (await gw.gql(PROFILE, headers=ALICE_ANON)).json()["data"]["me"]
        assert me["profile"] == {"events": 2, "monetary": 1999998.0}
        keys = {e.message_id: e.profile_key for e in gw.services.store.iter_events()}
        assert keys[buy["messageId"]] == keys[events[0]["messageId"]] == "anon:anon-alice"
        assert gw.services.store.resolve_identity("anon-alice") == "alice"


# ---------------------------------------------------------------- 2. identify takeover
async def test_identify_never_moves_a_link_to_another_user(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _alice_linked(gw)
        before = fingerprint(gw)
        steal = 'mutation { identify(anonymousId: "anon-alice") { status } }'
        # even with the id in its own header (the strongest evidence a user can bring)
        r = await gw.gql(steal, user="mallory", headers=ALICE_ANON)
        body = r.json()
        assert code_of(body) == "FORBIDDEN", body
        assert IDENTITY_TAKEN in body["errors"][0]["message"]
        service = await gw.gql(
            'mutation { identify(anonymousId: "anon-alice", userId: "mallory") { status } }',
            user="svc",
            scopes=("service",),
        )
        assert code_of(service.json()) == "FORBIDDEN"
        # the REST path: a per-event rejection with the field and the reason
        ev = {"messageId": _mid("idf"), "type": "identify", "anonymousId": "anon-alice"}
        rest = (await _post(gw, [ev], {**_bearer(gw, "mallory"), **ALICE_ANON})).json()
        assert rest["results"][0] | {"messageId": None} == {
            "index": 0,
            "status": "rejected",
            "messageId": None,
            "field": "anonymousId",
            "reason": IDENTITY_TAKEN,
        }
        svc_ev = {**ev, "messageId": _mid("idf"), "userId": "mallory"}
        svc = (await _post(gw, [svc_ev], _bearer(gw, "svc", "service"))).json()
        assert svc["results"][0]["status"] == "rejected"
        assert fingerprint(gw) == before
        assert gw.services.store.resolve_identity("anon-alice") == "alice"


async def test_identify_of_an_unlinked_id_needs_evidence(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _items(gw)
        carol = {"x-anonymous-id": "anon-carol"}
        assert (await _post(gw, [_view("i2"), _view("i3")], carol)).json()["accepted"] == 2
        before = fingerprint(gw)
        claim = 'mutation { identify(anonymousId: "anon-carol") { status } }'
        for headers in ({}, {"x-anonymous-id": "anon-mallory"}):
            r = await gw.gql(claim, user="mallory", headers=headers)
            assert code_of(r.json()) == "FORBIDDEN", r.text
            assert "X-Anonymous-Id" in r.json()["errors"][0]["message"]
            ev = {"messageId": _mid("idf"), "type": "identify", "anonymousId": "anon-carol"}
            rest = (await _post(gw, [ev], {**_bearer(gw, "mallory"), **headers})).json()
            assert rest["results"][0]["status"] == "rejected"
            assert rest["results"][0]["field"] == "anonymousId"
        assert fingerprint(gw) == before  # carol's history was not copied anywhere
        assert gw.services.store.resolve_identity("anon-carol") is None
        # the evidence: carol's own session signs in; or a server-side identify
        ok = await gw.gql(claim, user="carol", headers=carol)
        assert ok.json() == {"data": {"identify": {"status": "accepted"}}}
        server = await gw.gql(
            'mutation { identify(anonymousId: "anon-dan", userId: "dan") { status } }',
            user="svc",
            scopes=("service",),
        )
        assert server.json() == {"data": {"identify": {"status": "accepted"}}}


async def test_a_planted_message_id_cannot_block_an_identify(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _items(gw)
        dave = {"x-anonymous-id": "anon-dave"}
        await _post(gw, [_view("i1")], dave)
        # mallory plants events under the ids the identify mutation used to write itself
        planted = [
            _view("i1", messageId="identify:anon-dave:dave"),
            _view("i1", messageId="identify-anon-dave-dave"),
        ]
        assert (await _post(gw, planted, _bearer(gw, "mallory"))).json()["accepted"] == 2
        # the internal namespace is not writable: "_" can never start a client messageId
        internal = _view("i1", messageId="_identify:anon-dave:dave")
        res = (await _post(gw, [internal], _bearer(gw, "mallory"))).json()["results"][0]
        assert res["status"] == "rejected" and res["field"] == "messageId"
        r = await gw.gql(
            'mutation { identify(anonymousId: "anon-dave") { status } }', user="dave", headers=dave
        )
        assert r.json() == {"data": {"identify": {"status": "accepted"}}}, r.text
        assert gw.services.store.resolve_identity("anon-dave") == "dave"
        profile = (await gw.gql("{ me { profile { events } } }", user="dave")).json()
        assert profile["data"]["me"]["profile"]["events"] == 1
        again = await gw.gql(
            'mutation { identify(anonymousId: "anon-dave") { status } }', user="dave", headers=dave
        )
        assert again.json() == {"data": {"identify": {"status": "duplicate"}}}


# ---------------------------------------------------------------- 7. hostile event values
def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


HOSTILE = [
    pytest.param({"quantity": "²"}, "properties.quantity", "integer from 1", id="unicode-digit"),
    pytest.param({"quantity": "9" * 5000}, "properties.quantity", "integer", id="5000-digits"),
    pytest.param({"price": "9" * 5000}, "properties.price", "finite", id="price-5000-digits"),
    pytest.param({"deep": _nested(300)}, "properties", "nested deeper than", id="nested-300"),
    pytest.param(_nested(40), "properties", "nested deeper than", id="nested-40"),
]


@pytest.mark.parametrize(("props", "field", "reason"), HOSTILE)
async def test_hostile_properties_are_per_event_rejections(
    tmp_path: Path, props: dict[str, Any], field: str, reason: str
) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _items(gw)
        view = _view("i1")
        bad = {"messageId": _mid("bad"), "type": "purchase", "itemId": "i2", "properties": props}
        r = await _post(gw, [view, bad], _bearer(gw, "alice"))
        assert r.status_code == 200, r.text
        good, rejected = r.json()["results"]
        assert good == {"index": 0, "status": "accepted", "messageId": view["messageId"]}
        assert rejected["status"] == "rejected" and rejected["field"] == field
        assert reason in rejected["reason"]
        stored = [e.message_id for e in gw.services.store.iter_events()]
        assert stored == [view["messageId"]]  # the valid event of the batch is stored
        # the same through GraphQL track: per-event outcomes (or, for variables nested past the
        # endpoint's own depth limit, a 400 for the request), never a server error
        events = [_view("i1"), {**bad, "messageId": _mid("bad")}]
        tracked = await gw.gql(TRACK, {"e": events}, user="alice")
        assert tracked.status_code in (200, 400), tracked.text
        stored_now = 1
        if tracked.status_code == 200:
            got = tracked.json()["data"]["track"]
            assert got["accepted"] == 1 and got["rejected"] == 1
            assert got["results"][1]["field"] == field
            stored_now = 2
        # the app keeps serving
        after = await gw.gql("{ me { profile { events } } }", user="alice")
        assert after.json()["data"]["me"]["profile"]["events"] == stored_now


async def test_hostile_traits_and_a_validator_failure_cost_only_their_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _items(gw)
        h = {**_bearer(gw, "alice"), **ALICE_ANON}
        deep = {
            "messageId": _mid("idf"),
            "type": "identify",
            "anonymousId": "anon-alice",
            "traits": _nested(300),
        }
        r = await _post(gw, [_view("i1"), deep], h)
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert res[0]["status"] == "accepted"
        assert res[1]["status"] == "rejected" and res[1]["field"] == "traits"
        # An unexpected validator failure is logged and costs only that event.
        import profiles.ingest as ingest_module

        real = ingest_module.validate_event

        def flaky(raw: Any, **kw: Any) -> Any:
            if isinstance(raw, dict) and raw.get("messageId") == "boom":
                raise RuntimeError("validator bug")
            return real(raw, **kw)

        monkeypatch.setattr(ingest_module, "validate_event", flaky)
        r = await _post(gw, [_view("i2"), _view("i3", messageId="boom")], h)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected"]


# ---------------------------------------------------------------- 9. PII and trait caps
def _db_bytes(gw: Gateway) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(gw.data_dir.glob("tailor.db*")))


async def test_identify_event_traits_are_hashed_and_capped(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        await _items(gw)
        h = {**_bearer(gw, "alice"), **ALICE_ANON}
        ev = {
            "messageId": _mid("idf"),
            "type": "identify",
            "anonymousId": "anon-alice",
            "traits": {"email": "Alice@Example.org", "plan": "gold"},
        }
        r = await _post(gw, [ev], h)
        assert r.json()["accepted"] == 1, r.text
        stored = next(e for e in gw.services.store.iter_events() if e.type == "identify")
        traits = stored.properties["traits"]
        assert traits["plan"] == "gold"
        assert traits["email"].startswith("hmac-sha256:")
        assert traits["email"] == gw.services.privacy.hasher.hash_value("alice@example.org")
        gw.services.store._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert b"Alice@Example.org" not in _db_bytes(gw)
        assert b"alice@example.org" not in _db_bytes(gw).lower()
        # the 8 kB cap applies to the traits of an event as it does to its properties
        blob = {
            "messageId": _mid("idf"),
            "type": "identify",
            "anonymousId": "anon-alice",
            "traits": {"blob": "x" * 900_000},
        }
        res = (await _post(gw, [blob], h)).json()["results"][0]
        assert res["status"] == "rejected" and res["field"] == "traits"
        assert "larger than 8192 bytes" in res["reason"]
        assert b"x" * 10_000 not in _db_bytes(gw)


async def test_identify_mutation_traits_are_capped(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var") as gw:
        q = 'mutation($t: JSON) { identify(anonymousId: "anon-alice", traits: $t) { status } }'
        big = await gw.gql(q, {"t": {"blob": "x" * 20_000}}, user="alice", headers=ALICE_ANON)
        assert code_of(big.json()) == "BAD_USER_INPUT", big.text
        assert "larger than 8192 bytes" in big.json()["errors"][0]["message"]
        assert gw.services.store.get_user("alice") is None
        deep = await gw.gql(q, {"t": _nested(40)}, user="alice", headers=ALICE_ANON)
        assert code_of(deep.json()) == "BAD_USER_INPUT", deep.text
        # many small calls cannot grow a user's row past the CRM import cap
        codes = []
        for n in range(4):
            chunk = {f"k{n}-{i}": "y" * 60 for i in range(100)}  # ~7 kB each
            r = await gw.gql(q, {"t": chunk}, user="alice", headers=ALICE_ANON)
            codes.append(code_of(r.json()))
        assert codes[:2] == [None, None] and "BAD_USER_INPUT" in codes
        user = gw.services.store.get_user("alice")
        assert user is not None and len(str(dict(user.traits))) < 17_000


# ---------------------------------------------------------------- 10. scope x operation
OPERATIONS = ("events", "track", "identify", "setConsent", "forgetMe", "forgetUser")
ALLOWED = {
    # caller -> the operations it may run (all others answer FORBIDDEN / 403)
    "user": {"events", "track", "identify", "setConsent", "forgetMe"},
    "read-key": set(),
    "read-token": set(),
    "service-key": {"events", "track", "identify", "setConsent", "forgetMe"},
    "admin": set(OPERATIONS),
}


async def _credentials(gw: Gateway, caller: str) -> tuple[dict[str, str], bool]:
    """(headers, privileged) of a caller; every caller also sends its session's anonymous id."""
    registry: ApiKeyRegistry = gw.app.state.runtime.apikeys
    anon = {"x-anonymous-id": "anon-m"}
    if caller == "user":
        return {**_bearer(gw, "alice"), **anon}, False
    if caller == "read-key":
        return {"x-api-key": registry.create("dashboard", ["read"])[1], **anon}, False
    if caller == "read-token":
        return {**_bearer(gw, "reader", "read"), **anon}, False
    if caller == "service-key":
        return {"x-api-key": registry.create("collector", ["service"])[1], **anon}, True
    return {**_bearer(gw, "root", "admin"), **anon}, True


async def _run(gw: Gateway, op: str, headers: dict[str, str], privileged: bool) -> str:
    target = {"userId": "alice"} if privileged else {}
    if op == "events":
        r = await _post(gw, [_view("i1", **target)], headers)
        if r.status_code != 200:
            return str(code_of(r.json()))
        return "ok" if r.json()["accepted"] == 1 else "rejected"
    if op == "track":
        r = await gw.gql(TRACK, {"e": [_view("i1", **target)]}, headers=headers)
        body = r.json()
        return code_of(body) or ("ok" if body["data"]["track"]["accepted"] == 1 else "rejected")
    queries = {
        "identify": 'mutation { identify(anonymousId: "anon-m"%s) { status } }'
        % (', userId: "alice"' if privileged else ""),
        "setConsent": "mutation { setConsent(tracking: true) { tracking } }",
        "forgetMe": "mutation { forgetMe { total } }",
        "forgetUser": 'mutation { forgetUser(id: "bob") { total } }',
    }
    r = await gw.gql(queries[op], headers=headers)
    return code_of(r.json()) or "ok"


@pytest.mark.parametrize("caller", list(ALLOWED))
async def test_scope_by_operation_matrix(tmp_path: Path, caller: str) -> None:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0) as gw:
        await _items(gw)
        headers, privileged = await _credentials(gw, caller)
        before = fingerprint(gw)
        got = {op: await _run(gw, op, headers, privileged) for op in OPERATIONS}
        want = {op: "ok" if op in ALLOWED[caller] else "FORBIDDEN" for op in OPERATIONS}
        assert got == want
        if not ALLOWED[caller]:
            assert fingerprint(gw) == before  # a read-only caller changed nothing
            reads = await gw.gql("{ trending(first: 2) { score } me { id } }", headers=headers)
            assert "errors" not in reads.json(), reads.text  # and still reads

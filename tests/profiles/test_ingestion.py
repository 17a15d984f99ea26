"""Ingestion through the public entry points: validation, dedup, conflicts, identity, skew, limits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import NOW, Gateway, item_rows


async def post_events(gw: Gateway, events: list[dict[str, Any]], **headers: str) -> Any:
    h = {"authorization": f"Bearer {gw.token('collector', 'service')}", **headers}
    r = await gw.client.post("/v1/events", json=events, headers=h)
    return r


def seed_items(gw: Gateway, n: int = 6) -> None:
    from catalog.importer import validate_item

    items = [validate_item(r, NOW) for r in item_rows(n)]
    gw.services.store.upsert_items(items)
    gw.services.catalog.update(items)


def ev(mid: str, etype: str = "view", **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"messageId": mid, "type": etype, "userId": "u1", "itemId": "i1"}
    out.update(kw)
    return {k: v for k, v in out.items() if v is not None}


VALIDATION = [
    ({"type": "view", "userId": "u1", "itemId": "i1"}, "messageId", "is required"),
    (ev("m", "teleport"), "type", "unknown event type"),
    (ev("m", userId=None), "userId", "userId or anonymousId is required"),
    (ev("m", itemId=None), "itemId", "is required"),
    (ev("m", "identify", itemId=None), "anonymousId", "identify needs both"),
    (ev("m", channel="fax"), "channel", "must be one of"),
    (ev("m", timestamp="yesterday"), "timestamp", "not an ISO-8601"),
    (ev("m", timestamp=True), "timestamp", "boolean"),
    (ev("m", "purchase", properties={"price": -1}), "properties.price", ">= 0"),
    (ev("m", "purchase", properties={"quantity": 0}), "properties.quantity", "integer from 1"),
    (ev("m", "purchase", properties={"quantity": 2.5}), "properties.quantity", "integer from 1"),
    (ev("m", "rate", properties={}), "properties.value", "is required"),
    (ev("m", "rate", properties={"value": 11}), "properties.value", "<= 10"),
    (ev("m", "search", itemId=None, properties={}), "properties.query", "non-empty query"),
    (
        ev("m", "search", itemId=None, properties={"query": "x" * 501}),
        "properties.query",
        "longer than",
    ),
    (ev("m" * 129), "messageId", "longer than 128"),
    (ev("m", userId="u 1"), "userId", "may contain only"),
    (ev("m", properties="price=3"), "properties", "must be an object"),
    (ev("m", properties={"blob": "x" * 9000}), "properties", "larger than"),
    (ev("m", color="red"), "color", "unknown field"),
    (ev("m", traits={"a": 1}), "traits", "only identify"),
    ("not an object", "-", "must be a JSON object"),
]


@pytest.mark.parametrize(("raw", "field", "reason"), VALIDATION)
async def test_validation_matrix(gateway: Gateway, raw: Any, field: str, reason: str) -> None:
    r = await post_events(gateway, [raw, ev("ok-1")])
    assert r.status_code == 200
    body = r.json()
    bad, good = body["results"]
    assert bad["status"] == "rejected" and bad["index"] == 0
    assert bad["field"] == field
    assert reason in bad["reason"]
    # The valid event of the same batch is stored anyway; the rejected one never is.
    assert good == {"index": 1, "status": "accepted", "messageId": "ok-1"}
    assert gateway.services.store.count_events() == 1


async def test_duplicates_and_conflicts(gateway: Gateway) -> None:
    first = await post_events(gateway, [ev("m1"), ev("m1")])
    assert [x["status"] for x in first.json()["results"]] == ["accepted", "duplicate"]
    again = await post_events(gateway, [ev("m1")])
    assert again.json()["results"][0]["status"] == "duplicate"
    changed = await post_events(gateway, [ev("m1", itemId="i2")])
    res = changed.json()["results"][0]
    assert res["status"] == "conflict" and res["field"] == "messageId"
    assert gateway.services.store.count_events() == 1
    stored = list(gateway.services.store.iter_events())
    assert stored[0].item_id == "i1"  # never silently overwritten


async def test_timestamps_formats_and_skew_clamp(gateway: Gateway) -> None:
    events = [
        ev("t1", timestamp="2025-12-31T23:00:00+01:00"),
        ev("t2", timestamp=NOW - 60),
        ev("t3", timestamp=(NOW - 120) * 1000),
        ev("t4"),
        ev("t5", timestamp=NOW + 3600),
        ev("t6", timestamp=NOW + 100),
    ]
    body = (await post_events(gateway, events)).json()
    assert [x.get("clamped", False) for x in body["results"]] == [False] * 4 + [True, False]
    got = {e.message_id: e for e in gateway.services.store.iter_events()}
    assert got["t1"].ts == NOW - 7200
    assert got["t2"].ts == NOW - 60
    assert got["t3"].ts == NOW - 120
    assert got["t4"].ts == NOW and got["t4"].received_at == NOW
    assert got["t5"].ts == NOW and got["t5"].flags == 1
    assert got["t6"].ts == NOW + 100 and got["t6"].flags == 0


async def test_batch_limits(gateway: Gateway) -> None:
    limit = gateway.app.state.settings.max_batch_events
    too_many = [ev(f"b{i}") for i in range(limit + 1)]
    r = await post_events(gateway, too_many)
    assert r.status_code == 413
    assert f"limit is {limit}" in r.json()["errors"][0]["message"]
    big = [ev(f"c{i}", properties={"note": "x" * 4000}) for i in range(300)]
    assert (await post_events(gateway, big)).status_code == 413
    assert gateway.services.store.count_events() == 0


@pytest.mark.parametrize(
    ("content", "ctype", "status"),
    [
        (b"{oops", "application/json", 400),
        (b'{"events": []}', "application/json", 400),
        (b"[]", "text/plain", 415),
        (
            b'{"messageId":"n1","type":"view","userId":"u1","itemId":"i1"}\nnope\n',
            "application/x-ndjson",
            400,
        ),
    ],
)
async def test_bad_bodies(gateway: Gateway, content: bytes, ctype: str, status: int) -> None:
    h = {"authorization": f"Bearer {gateway.token('c', 'service')}", "content-type": ctype}
    r = await gateway.client.post("/v1/events", content=content, headers=h)
    assert r.status_code == status
    assert gateway.services.store.count_events() == 0


async def test_ndjson_and_batch_object(gateway: Gateway) -> None:
    h = {"authorization": f"Bearer {gateway.token('c', 'service')}"}
    nd = b'{"messageId":"n1","type":"view","userId":"u1","itemId":"i1"}\n\n{"messageId":"n2","type":"click","userId":"u1","itemId":"i1"}\n'
    r = await gateway.client.post(
        "/v1/events", content=nd, headers={**h, "content-type": "application/x-ndjson"}
    )
    assert r.json()["accepted"] == 2
    r = await gateway.client.post("/v1/events", json={"batch": [ev("n3")]}, headers=h)
    assert r.json()["accepted"] == 1


async def test_users_send_only_their_own_events(gateway: Gateway) -> None:
    h = {"authorization": f"Bearer {gateway.token('u1')}"}
    r = await gateway.client.post(
        "/v1/events",
        json=[{"messageId": "o1", "type": "view", "itemId": "i1"}, ev("o2", userId="u2")],
        headers=h,
    )
    own, other = r.json()["results"]
    assert own["status"] == "accepted"
    assert other["status"] == "rejected" and other["field"] == "userId"
    anon = await gateway.client.post(
        "/v1/events", json=[{"messageId": "o3", "type": "view", "itemId": "i1", "userId": "u1"}]
    )
    assert anon.json()["results"][0]["status"] == "rejected"


async def test_identity_merge_joins_anonymous_history(gateway: Gateway) -> None:
    seed_items(gateway)
    anon = {"x-anonymous-id": "anon-1"}
    r = await gateway.client.post(
        "/v1/events",
        json=[
            {"messageId": "a1", "type": "view", "itemId": "i1", "sessionId": "s1"},
            {"messageId": "a2", "type": "add_to_cart", "itemId": "i1", "sessionId": "s1"},
        ],
        headers=anon,
    )
    assert r.json()["accepted"] == 2
    await post_events(
        gateway, [ev("u-1", "purchase", itemId="i2", properties={"price": 20, "quantity": 2})]
    )
    q = 'mutation { identify(anonymousId: "anon-1", traits: {tier: "gold"}) { status userId } }'
    res = await gateway.gql(q, user="u1", headers=anon)
    assert res.json() == {"data": {"identify": {"status": "accepted", "userId": "u1"}}}
    profile = await gateway.gql(
        "{ me { traits profile { events monetary frequency sessions } } }", user="u1"
    )
    assert profile.json()["data"]["me"] == {
        "traits": {"tier": "gold"},
        "profile": {"events": 3, "monetary": 40.0, "frequency": 1, "sessions": 1},
    }
    assert gateway.services.store.get_profile_state("anon:anon-1") is None
    # Later anonymous-only events (the header is a claim anyone can make) start a fresh
    # anonymous profile; they never reach the user's.
    await gateway.client.post(
        "/v1/events", json=[{"messageId": "a3", "type": "view", "itemId": "i3"}], headers=anon
    )
    after = await gateway.gql("{ me { profile { events } } }", user="u1")
    assert after.json()["data"]["me"]["profile"]["events"] == 3
    assert gateway.services.store.get_profile_state("anon:anon-1") is not None
    # Identify again: idempotent.
    again = await gateway.gql(q, user="u1", headers=anon)
    assert again.json()["data"]["identify"]["status"] == "duplicate"


async def test_anonymous_events_after_an_identify_in_the_same_batch_stay_anonymous(
    gateway: Gateway,
) -> None:
    """One write group holding an identify and then anonymous-only events of the same id:
    those events build a fresh anonymous profile, as they would in a later batch, and the
    stored log agrees with the profiles (a rebuild gives the same states)."""
    seed_items(gateway)
    batch = [
        {"messageId": "b1", "type": "view", "anonymousId": "anon-7", "itemId": "i1"},
        {"messageId": "b2", "type": "identify", "anonymousId": "anon-7", "userId": "u7"},
        {"messageId": "b3", "type": "view", "anonymousId": "anon-7", "itemId": "i2"},
        {"messageId": "b4", "type": "click", "anonymousId": "anon-7", "itemId": "i3"},
    ]
    r = await post_events(gateway, batch)
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == ["accepted"] * 4
    store = gateway.services.store
    user = await gateway.gql("{ me { profile { events } } }", user="u7")
    assert user.json()["data"]["me"]["profile"]["events"] == 1  # the view before the merge
    anon = store.get_profile_state("anon:anon-7")
    assert anon is not None
    keys = {e.message_id: e.profile_key for e in store.iter_events()}
    assert keys == {"b1": "u7", "b2": "u7", "b3": "anon:anon-7", "b4": "anon:anon-7"}
    # Another merge of the same pair later joins the fresh anonymous history too.
    again = [{"messageId": "b5", "type": "identify", "anonymousId": "anon-7", "userId": "u7"}]
    assert (await post_events(gateway, again)).json()["results"][0]["status"] == "accepted"
    merged = await gateway.gql("{ me { profile { events } } }", user="u7")
    assert merged.json()["data"]["me"]["profile"]["events"] == 3
    assert store.get_profile_state("anon:anon-7") is None


async def test_identify_permissions(gateway: Gateway) -> None:
    q = 'mutation { identify(anonymousId: "a9", userId: "u2") { status } }'
    assert (await gateway.gql(q, user="u1")).json()["errors"][0]["extensions"][
        "code"
    ] == "FORBIDDEN"
    anon = (await gateway.gql('mutation { identify(anonymousId: "a9") { status } }')).json()
    assert anon["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    ok = await gateway.gql(q, user="svc", scopes=("service",))
    assert ok.json()["data"]["identify"]["status"] == "accepted"


async def test_read_your_writes_through_graphql_track(gateway: Gateway) -> None:
    seed_items(gateway)
    track = """mutation($e: [EventInput!]!) { track(events: $e) { accepted rejected results { status } } }"""
    before = await gateway.gql("{ me { profile { events } } }", user="u1")
    assert before.json()["data"]["me"]["profile"] is None
    for n in range(3):
        events = [{"messageId": f"g{n}", "type": "view", "itemId": "i2", "sessionId": "s"}]
        r = await gateway.gql(track, {"e": events}, user="u1")
        assert r.json()["data"]["track"]["accepted"] == 1
        prof = await gateway.gql(
            "{ me { profile { events views7d topCategories { category } } } }", user="u1"
        )
        p = prof.json()["data"]["me"]["profile"]
        assert p["events"] == n + 1 and p["views7d"] == n + 1
        assert p["topCategories"] == [{"category": "Bags"}]


async def test_profile_features(gateway: Gateway) -> None:
    seed_items(gateway)
    day = 86400
    events = [
        ev("p1", timestamp=NOW - 40 * day, sessionId="s1"),
        ev("p2", "view", itemId="i2", timestamp=NOW - 3 * day, sessionId="s2"),
        ev(
            "p3",
            "add_to_cart",
            itemId="i2",
            timestamp=NOW - 3 * day + 60,
            sessionId="s2",
            properties={"price": 12},
        ),
        ev(
            "p4",
            "purchase",
            itemId="i2",
            timestamp=NOW - 3 * day + 120,
            sessionId="s2",
            properties={"price": 12, "quantity": 3},
        ),
        ev("p5", "rate", itemId="i4", timestamp=NOW - day, properties={"value": 5}),
    ]
    await post_events(gateway, events)
    r = await gateway.gql(
        "{ me { profile { features { name value } lastChannel lastPurchase } } }", user="u1"
    )
    p = r.json()["data"]["me"]["profile"]
    f = {x["name"]: x["value"] for x in p["features"]}
    assert f["views_7d"] == 1 and f["views_30d"] == 1 and f["views_total"] == 2
    assert f["purchases_7d"] == 1 and f["monetary"] == 36 and f["frequency"] == 1
    assert f["sessions"] == 2 and f["avg_session_duration_s"] == 60
    assert f["conversion_rate"] == 0.5 and f["add_to_cart_rate"] == 0.5
    assert f["engagement_score"] == 0.5 + 0.5 + 3 + 5 + 1
    assert f["recency_days"] == 1
    assert f["days_since_last_purchase"] == pytest.approx(3 - 120 / 86400, abs=1e-5)
    assert p["lastChannel"] == "api" and p["lastPurchase"].startswith("2025-12-29")


def test_batch_answer_is_each_result_as_json() -> None:
    """BatchResult.as_json builds the common answers inline: the same dicts, key order
    included, as EventResult.as_json."""
    from profiles.types import BatchResult, EventResult

    results = [
        EventResult(0, "accepted", "m0"),
        EventResult(1, "accepted", "m1", clamped=True),
        EventResult(2, "duplicate", "m2"),
        EventResult(3, "conflict", "m3", "messageId", "stored with a different payload"),
        EventResult(4, "rejected", None, "type", "is required"),
        EventResult(5, "rejected", "m5", "anonymousId", "taken"),
        EventResult(6, "dropped", "m6", None, "no tracking consent"),
        EventResult(7, "accepted", None),
    ]
    doc = BatchResult(results).as_json()
    answers = doc["results"]
    assert isinstance(answers, list) and answers == [r.as_json() for r in results]
    assert [list(d) for d in answers] == [list(r.as_json()) for r in results]  # key order
    assert (doc["accepted"], doc["duplicates"], doc["conflicts"], doc["rejected"]) == (3, 1, 1, 2)
    assert doc["dropped"] == 1

"""Consent, the Sec-GPC/DNT opt-out, erasure (nothing findable afterwards), PII hashing, retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.privacy import vacuum
from tests.conftest import FakeClock, Gateway
from tests.security.conftest import open_gateway, seed, track

ME = "{ me { id traits profile { events } } }"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with open_gateway(tmp_path / "var", rate_limit_per_s=0) as g:
        await seed(g)
        yield g


def _disk_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("tailor.db*")))


async def test_forget_me_leaves_nothing_findable(gw: Gateway) -> None:
    store = gw.services.store
    before_disk = _disk_bytes(gw.data_dir)
    assert b"alice" in before_disk and b"anon-alice" in before_disk  # the check can see data
    bob_events = sum(1 for e in store.iter_events() if e.user_id == "bob")
    # warm every cache tier with her answers first (response cache, profile cache)
    for _ in range(2):
        warm = (await gw.gql(ME, user="alice")).json()["data"]["me"]
        assert warm["profile"]["events"] == 4 and warm["traits"]["plan"] == "gold"
        warm_get = await gw.client.get(
            "/graphql",
            params={"query": ME},
            headers={"authorization": f"Bearer {gw.token('alice')}"},
        )
        assert warm_get.json()["data"]["me"]["profile"]["events"] == 4

    r = await gw.gql("mutation { forgetMe { userId total counts { store count } } }", user="alice")
    receipt = r.json()["data"]["forgetMe"]
    counts = {c["store"]: c["count"] for c in receipt["counts"]}
    # 3 own events + 1 anonymous event that joined the profile + the identify event; and the
    # cached answers about her (the edge cache tier)
    assert counts.pop("edge.cache") >= 1
    # segment membership (issue 21 item 6): a tier of its own; no model is trained here
    assert counts.pop("segments") == 0
    # experiment exposures and attributions (docs/EXPERIMENTS.md): none defined here
    assert counts.pop("experiments") == 0
    assert counts == {
        "store.events": 5,
        "store.profiles": 1,
        "store.identities": 1,
        "store.users": 1,
    }
    assert receipt["total"] >= 8 and receipt["userId"] == "alice"

    # queries: the person is gone, for herself and for an admin
    me = (await gw.gql(ME, user="alice")).json()["data"]["me"]
    assert me == {"id": "alice", "traits": {}, "profile": None}
    cached_get = await gw.client.get(
        "/graphql", params={"query": ME}, headers={"authorization": f"Bearer {gw.token('alice')}"}
    )
    assert cached_get.json()["data"]["me"] == {"id": "alice", "traits": {}, "profile": None}
    admin = await gw.gql('{ user(id: "alice") { id } }', user="root", scopes=("admin",))
    assert admin.json()["data"]["user"] is None
    anon = await gw.client.post(
        "/graphql", json={"query": ME}, headers={"x-anonymous-id": "anon-alice"}
    )
    assert anon.json()["data"]["me"]["profile"] is None
    # the store, the event log and the in-memory profile state
    assert not [e for e in store.iter_events() if "alice" in repr(e)]
    assert store.resolve_identity("anon-alice") is None
    assert store.get_profile_state("alice") is None and store.get_user("alice") is None
    assert not [k for k in getattr(gw.services.ingest, "_state_cache", {}) if "alice" in k]
    # the files: database and WAL, then again after a VACUUM
    assert b"alice" not in _disk_bytes(gw.data_dir)
    vacuum(store)
    assert b"alice" not in _disk_bytes(gw.data_dir)
    # other people are untouched
    assert sum(1 for e in store.iter_events() if e.user_id == "bob") == bob_events
    assert store.get_profile_state("bob") is not None


async def test_forget_user_needs_the_admin_scope(gw: Gateway) -> None:
    q = 'mutation { forgetUser(id: "bob") { total } }'
    service = await gw.gql(q, user="svc", scopes=("service",))
    assert service.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gw.services.store.get_profile_state("bob") is not None
    admin = await gw.gql(q, user="root", scopes=("admin",))
    assert admin.json()["data"]["forgetUser"]["total"] >= 2
    assert gw.services.store.get_profile_state("bob") is None


async def test_forget_me_needs_a_user(gw: Gateway) -> None:
    r = await gw.client.post(
        "/graphql",
        json={"query": "mutation { forgetMe { total } }"},
        headers={"x-anonymous-id": "anon-alice"},
    )
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_registered_erasers_run_and_are_counted(gw: Gateway) -> None:
    from profiles.privacy import FunctionEraser

    held = {"alice": [1, 2, 3], "bob": [4]}
    gw.services.privacy.add_eraser(
        FunctionEraser("cache.test", lambda uid, keys: len(held.pop(uid, [])))
    )
    r = await gw.gql("mutation { forgetMe { counts { store count } } }", user="alice")
    counts = {c["store"]: c["count"] for c in r.json()["data"]["forgetMe"]["counts"]}
    assert counts["cache.test"] == 3 and "alice" not in held and "bob" in held


async def test_without_tracking_consent_events_are_dropped(gw: Gateway) -> None:
    r = await gw.gql(
        "mutation { setConsent(tracking: false) { personalization tracking } }", user="bob"
    )
    assert r.json()["data"]["setConsent"] == {"personalization": True, "tracking": False}
    assert (await gw.gql("{ consent { tracking } }", user="bob")).json()["data"]["consent"] == {
        "tracking": False
    }
    n = gw.services.store.count_events()
    res = await track(gw, "bob", [("view", "i1"), ("click", "i1")])
    assert res.json()["dropped"] == 2 and res.json()["accepted"] == 0
    assert gw.services.store.count_events() == n
    # and via GraphQL track
    g = await gw.gql(
        'mutation { track(events: [{messageId: "b-x", type: view, itemId: "i1"}]) '
        "{ accepted results { status reason } } }",
        user="bob",
    )
    assert g.json()["data"]["track"]["results"][0]["status"] == "dropped"
    assert gw.services.store.count_events() == n
    # consent back on: tracked again
    await gw.gql("mutation { setConsent(tracking: true) { tracking } }", user="bob")
    assert (await track(gw, "bob", [("view", "i5")])).json()["accepted"] == 1


@pytest.mark.parametrize("header", [{"sec-gpc": "1"}, {"dnt": "1"}])
async def test_gpc_and_dnt_opt_out_of_tracking(gw: Gateway, header: dict[str, str]) -> None:
    n = gw.services.store.count_events()
    res = await track(gw, "bob", [("view", "i2")], headers=header)
    assert res.json()["dropped"] == 1
    assert gw.services.store.count_events() == n
    assert (await track(gw, "bob", [("view", "i2")], headers={"sec-gpc": "0"})).json()[
        "accepted"
    ] == 1


async def test_gpc_can_be_ignored_by_setting(tmp_path: Path) -> None:
    async with open_gateway(tmp_path / "var", honor_gpc=False) as g:
        assert (await track(g, "bob", [("view", "i2")], headers={"sec-gpc": "1"})).json()[
            "accepted"
        ] == 1


async def test_only_privileged_callers_set_someone_elses_consent(gw: Gateway) -> None:
    q = 'mutation { setConsent(userId: "alice", personalization: false) { personalization } }'
    denied = await gw.gql(q, user="bob")
    assert denied.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gw.services.privacy.consent("alice").personalization is True
    ok = await gw.gql(q, user="crm", scopes=("service",))
    assert ok.json()["data"]["setConsent"] == {"personalization": False}
    assert gw.services.privacy.personalization_allowed("alice") is False


async def test_pii_traits_are_stored_only_as_salted_hashes(gw: Gateway, tmp_path: Path) -> None:
    traits = gw.services.store.get_user("alice").traits
    assert traits["plan"] == "gold"
    assert (
        traits["email"].startswith("hmac-sha256:")
        and len(traits["email"]) == len("hmac-sha256:") + 64
    )
    disk = _disk_bytes(gw.data_dir).lower()
    assert b"alice@example.org" not in disk
    # normalized: the same address in another case hashes the same; another salt differs
    privacy = gw.services.privacy
    assert privacy.hash_value(" alice@example.ORG ") == traits["email"]
    async with open_gateway(tmp_path / "other", pii_salt="another-salt") as other:
        assert other.services.privacy.hash_value("alice@example.org") != traits["email"]


async def test_retention_prunes_old_events(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_gateway(tmp_path / "var", clock=clock, rate_limit_per_s=0) as g:
        await track(g, "old", [("view", "i1")])
        clock.advance(40 * 86_400)
        await track(g, "new", [("view", "i1")])
        counts = g.services.privacy.prune(30)
        assert counts == {"events": 1, "profiles": 1}
        assert [e.user_id for e in g.services.store.iter_events()] == ["new"]
        assert g.services.store.get_profile_state("old") is None
        assert g.services.store.get_profile_state("new") is not None
        assert g.services.privacy.prune(0) == {"events": 0, "profiles": 0}


def test_batch_consent_answers_as_each_event_alone(tmp_path: Path) -> None:
    """``tracking_allowed_many`` (the ingestion hook) decides each event as
    ``tracking_allowed`` does: by its user's consent, or, for an anonymous-only event, by the
    consent of the user its anonymous id is linked to (none: tracked)."""
    from profiles.privacy import PiiHasher, PrivacyService, request_opt_out
    from storage import open_store
    from storage.types import EventRecord, UserRecord

    store = open_store(tmp_path / "p.db")
    store.upsert_users(
        [UserRecord("no", {}, True, False, 1.0), UserRecord("yes", {}, True, True, 1.0)]
    )
    store.insert_events(
        [EventRecord("l", "identify", "no", 1.0, 1.0, "h", user_id="no", anonymous_id="a-no")]
    )
    privacy = PrivacyService(store, hasher=PiiHasher((), "salt"))

    def event(n: int, user: str | None, anon: str | None) -> EventRecord:
        key = user if user is not None else f"anon:{anon}"
        return EventRecord(f"m{n}", "view", key, 1.0, 1.0, "h", user_id=user, anonymous_id=anon)

    people = [
        ("no", None),
        ("yes", None),
        ("new", None),  # no user row: the default consent
        (None, "a-no"),  # linked to "no"
        (None, "a-free"),  # linked to nobody
        ("yes", "a-no"),  # a user id decides, whatever the anonymous id
        ("no", None),  # repeats are decided once, the same way
        (None, "a-no"),
    ]
    events = [event(n, user, anon) for n, (user, anon) in enumerate(people)]
    one_by_one = [privacy.tracking_allowed(ev) for ev in events]
    fresh = PrivacyService(store, hasher=PiiHasher((), "salt"))  # nothing cached yet
    assert fresh.tracking_allowed_many(events) == one_by_one
    assert one_by_one == [False, True, True, False, True, True, False, False]
    privacy.set_consent("yes", tracking=False)
    assert privacy.tracking_allowed_many(events)[1] is False
    with request_opt_out():
        assert fresh.tracking_allowed_many(events) == [False] * len(events)
    store.close()

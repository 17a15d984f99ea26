"""The store conformance suite: the :class:`storage.types.Store` contract, on SQLite and on
PostgreSQL alike (``any_store`` is parametrized over both backends, see conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from storage import open_store
from storage.experiments import Attribution, VariantCounts
from storage.migrations import MIGRATIONS, statements
from storage.privacy import (
    ApiKeyRow,
    ErasureRow,
    erase_subject,
    erasures_since,
    get_api_key,
    insert_api_key,
    linked_anonymous_ids,
    list_api_keys,
    prune_events_before,
    revoke_api_key,
)
from storage.types import (
    JSON,
    EventRecord,
    ItemRecord,
    SchemaError,
    StorageError,
    Store,
    StoreUnavailable,
    UserRecord,
)


def ev(
    mid: str,
    key: str = "u1",
    *,
    ts: float = 1.0,
    type: str = "view",
    payload: str = "h",
    item: str | None = "i1",
    user: str | None = None,
    anon: str | None = None,
) -> EventRecord:
    user = user if user is not None else (None if key.startswith("anon:") else key)
    return EventRecord(
        mid,
        type,
        key,
        ts,
        ts,
        payload,
        user_id=user,
        anonymous_id=anon,
        item_id=item,
        properties={"n": 1},
    )


def identify(mid: str, anon: str, user: str, ts: float = 5.0) -> EventRecord:
    return ev(mid, user, ts=ts, type="identify", item=None, user=user, anon=anon)


def count_views(accepted: list[EventRecord], store: Store) -> dict[str, JSON]:
    """A profile update that reads the stored state and adds this group's events to it."""
    out: dict[str, JSON] = {}
    keys = sorted({e.profile_key for e in accepted})
    stored = store.get_profile_states(keys)
    for key in keys:
        n = int(stored.get(key, {}).get("n", 0))
        out[key] = {"n": n + sum(1 for e in accepted if e.profile_key == key)}
    return out


# ---------------------------------------------------------------------- schema
def test_schema_is_current_and_reopening_does_not_reapply(store_target: str | Path) -> None:
    store = open_store(store_target)
    assert store.schema_version == len(MIGRATIONS)
    assert store.ping()
    store.upsert_items([ItemRecord("a", "A")])
    store.close()
    again = open_store(store_target)
    assert again.schema_version == len(MIGRATIONS) and again.count_items() == 1
    again.close()


def test_a_newer_database_is_refused(store_target: str | Path) -> None:
    open_store(store_target).close()
    newer = len(MIGRATIONS) + 1
    if isinstance(store_target, Path):
        import sqlite3

        conn = sqlite3.connect(store_target)
        conn.execute(f"PRAGMA user_version={newer}")
        conn.close()
    else:
        with psycopg.connect(store_target, autocommit=True) as conn:
            conn.execute("UPDATE tailor_schema SET version=%s", (newer,))
    try:
        with pytest.raises(SchemaError, match="newer than this code"):
            open_store(store_target)
    finally:
        if not isinstance(store_target, Path):
            with psycopg.connect(store_target, autocommit=True) as conn:
                conn.execute("UPDATE tailor_schema SET version=%s", (len(MIGRATIONS),))


def test_every_migration_renders_for_both_dialects() -> None:
    for number in range(1, len(MIGRATIONS) + 1):
        lite, pg = statements(number, "sqlite"), statements(number, "postgresql")
        assert len(lite) == len(pg) > 0
        assert not any("AUTOINCREMENT" in s or " REAL" in s for s in pg)


# ---------------------------------------------------------------------- catalog and users
def test_items_round_trip_upsert_and_order(any_store: Store) -> None:
    any_store.upsert_items(
        [
            ItemRecord("b", "B", categories=("x", "y"), attributes={"k": 1}, price=2.5),
            ItemRecord("a", "A", tags=("t",), available=False, updated_at=10.0),
            ItemRecord("B", "capital"),
            ItemRecord("a", "A again", updated_at=20.0),  # the last of one id wins
        ]
    )
    got = any_store.get_items(["b", "missing", "b", "a"])
    assert sorted(got) == ["a", "b"]
    assert got["b"].categories == ("x", "y") and got["b"].attributes == {"k": 1}
    assert got["b"].price == 2.5 and got["a"].title == "A again" and got["a"].available
    assert [i.id for i in any_store.iter_items()] == ["B", "a", "b"]  # byte order on both
    assert any_store.count_items() == 3
    assert [i.id for i in any_store.items_updated_since(15.0)] == ["a"]
    any_store.upsert_items([ItemRecord("b", "B2", price=None)])
    assert any_store.get_items(["b"])["b"].title == "B2"
    assert any_store.get_items(["b"])["b"].price is None


def test_users_round_trip_with_traits_filter(store_target: str | Path) -> None:
    store = open_store(
        store_target, traits_filter=lambda t: {k: v for k, v in t.items() if k != "email"}
    )
    try:
        store.upsert_users(
            [UserRecord("u", {"tier": "gold", "email": "a@b"}, consent_personalization=False)]
        )
        user = store.get_user("u")
        assert user is not None and user.traits == {"tier": "gold"}
        assert not user.consent_personalization and user.consent_tracking
        assert user.updated_at > 0
        assert store.get_user("nobody") is None and store.count_users() == 1
    finally:
        store.close()


def test_get_users_reads_many_in_one_call(any_store: Store) -> None:
    users = [UserRecord(f"u{n}", {"n": n}, consent_tracking=n % 2 == 0) for n in range(700)]
    any_store.upsert_users(users)
    # More ids than one SQLite chunk (500), repeats and unknown ids among them.
    wanted = [f"u{n}" for n in range(0, 700, 1)] + ["u3", "nobody", "u699"]
    found = any_store.get_users(wanted)
    assert set(found) == {f"u{n}" for n in range(700)}
    assert found["u3"] == any_store.get_user("u3")
    assert found["u4"].consent_tracking and not found["u5"].consent_tracking
    assert found["u10"].traits == {"n": 10}
    assert any_store.get_users([]) == {} and any_store.get_users(["nobody"]) == {}


def test_timestamps_keep_full_precision(any_store: Store) -> None:
    ts = 1_767_225_600.123456
    any_store.insert_events([ev("m", ts=ts)])
    assert next(iter(any_store.iter_events())).ts == ts
    assert any_store.newest_event_ts() == ts


# ---------------------------------------------------------------------- events
def test_outcomes_accepted_duplicate_conflict(any_store: Store) -> None:
    assert any_store.insert_events([ev("m1"), ev("m2"), ev("m1")]) == [
        "accepted",
        "accepted",
        "duplicate",
    ]
    assert any_store.insert_events([ev("m1"), ev("m2", payload="other"), ev("m3")]) == [
        "duplicate",
        "conflict",
        "accepted",
    ]
    assert any_store.count_events() == 3


def test_profile_update_sees_exactly_the_accepted_events(any_store: Store) -> None:
    """A group of new events, then one mixing new ids with a stored one and a repeat: the
    profile update (inside the transaction) gets the accepted events, in order, and the log
    holds each id once (SQLite tries the all-new insert first and undoes it on a duplicate)."""
    seen: list[list[str]] = []

    def update(accepted: list[EventRecord]) -> Mapping[str, JSON]:
        seen.append([e.message_id for e in accepted])
        return {e.profile_key: {"n": len(accepted)} for e in accepted}

    assert any_store.insert_events([ev("m1"), ev("m2", "u2")], update) == ["accepted"] * 2
    assert any_store.insert_events(
        [ev("m3"), ev("m1"), ev("m4", "u2"), ev("m3"), ev("m2", payload="other")], update
    ) == ["accepted", "duplicate", "accepted", "duplicate", "conflict"]
    assert seen == [["m1", "m2"], ["m3", "m4"]]
    assert sorted(e.message_id for e in any_store.iter_events()) == ["m1", "m2", "m3", "m4"]
    assert any_store.count_events() == 4
    assert any_store.get_profile_states(["u1", "u2"]) == {"u1": {"n": 2}, "u2": {"n": 2}}
    # Nothing new at all: no profile update, nothing stored.
    assert any_store.insert_events([ev("m4", "u2")], update) == ["duplicate"]
    assert len(seen) == 2 and any_store.count_events() == 4


@pytest.mark.parametrize("size", [1, 63, 64, 65, 1024, 1100, 2100])
def test_groups_of_any_size_store_every_row_and_profile(any_store: Store, size: int) -> None:
    """Group sizes on both sides of the SQLite writer's statement sizes (it inserts up to
    1,024 rows per statement, a multiple of 64, then powers of two): every row and every profile
    is stored once, with its own values, and the answers are those of one row at a time. The
    second group repeats one id and sends another with a new payload (the classifying path)."""
    first = [ev(f"m{n}", f"u{n % 700}", ts=1.0 + n, item=f"i{n}") for n in range(size)]

    def update(accepted: list[EventRecord]) -> Mapping[str, JSON]:
        return {e.profile_key: {"last": e.message_id} for e in accepted}

    assert any_store.insert_events(first, update) == ["accepted"] * size
    stored = {e.message_id: e for e in any_store.iter_events()}
    assert len(stored) == size == any_store.count_events()
    assert all(
        (stored[e.message_id].profile_key, stored[e.message_id].ts, stored[e.message_id].item_id)
        == (e.profile_key, e.ts, e.item_id)
        for e in first
    )
    keys = sorted({e.profile_key for e in first})
    assert any_store.get_profile_states(keys) == {
        k: {"last": max((e for e in first if e.profile_key == k), key=lambda e: e.ts).message_id}
        for k in keys
    }
    second = [ev(f"n{n}", "u1", ts=1.0 + n, item=f"i{n}") for n in range(size)] + [
        ev("m0", "u0", ts=1.0, item="i0"),
        ev(f"m{size - 1}", payload="other"),
    ]
    assert any_store.insert_events(second, update) == ["accepted"] * size + [
        "duplicate",
        "conflict",
    ]
    assert any_store.count_events() == 2 * size


def test_iter_events_in_time_order_with_filters(any_store: Store) -> None:
    any_store.insert_events(
        [ev("c", "u2", ts=3.0), ev("a", "u1", ts=1.0), ev("b", "u1", ts=2.0), ev("d", ts=2.0)]
    )
    assert [e.message_id for e in any_store.iter_events()] == ["a", "b", "d", "c"]
    assert [e.message_id for e in any_store.iter_events(since=2.0)] == ["b", "d", "c"]
    assert [e.message_id for e in any_store.iter_events(profile_key="u2")] == ["c"]
    first = next(iter(any_store.iter_events()))
    assert first.properties == {"n": 1} and first.item_id == "i1" and first.user_id == "u1"
    assert any_store.newest_event_ts() == 3.0
    assert sorted(any_store.event_profile_keys()) == ["u1", "u2"]


def test_empty_store_answers(any_store: Store) -> None:
    assert any_store.newest_event_ts() is None and any_store.count_events() == 0
    assert list(any_store.iter_events()) == [] and list(any_store.iter_profile_keys()) == []
    assert any_store.insert_events([]) == []
    assert any_store.get_items([]) == {} and any_store.get_profile_states([]) == {}


def test_a_failed_group_leaves_nothing(any_store: Store) -> None:
    def boom(_accepted: list[EventRecord]) -> Mapping[str, JSON]:
        raise RuntimeError("profile update failed")

    with pytest.raises(RuntimeError):
        any_store.insert_events([ev("m1"), identify("m2", "a1", "u1")], boom)
    assert any_store.count_events() == 0
    assert any_store.resolve_identity("a1") is None
    assert any_store.get_profile_state("u1") is None
    assert any_store.insert_events([ev("m1")]) == ["accepted"]


def test_identify_links_rekeys_and_never_moves(any_store: Store) -> None:
    any_store.insert_events(
        [ev("v1", "anon:a1", anon="a1", user=None)],
        lambda acc: {"anon:a1": {"n": 1}},
    )
    assert any_store.get_profile_state("anon:a1") == {"n": 1}
    assert any_store.insert_events([identify("i1", "a1", "u1")]) == ["accepted"]
    assert any_store.resolve_identity("a1") == "u1"
    assert [e.profile_key for e in any_store.iter_events()] == ["u1", "u1"]
    assert any_store.get_profile_state("anon:a1") is None  # the anonymous profile joined u1
    assert linked_anonymous_ids(any_store, "u1") == ["a1"]
    # a link never moves to another user, even inside one group
    assert any_store.insert_events([identify("i2", "a1", "u2"), identify("i3", "a9", "u2")]) == [
        "refused",
        "accepted",
    ]
    assert any_store.insert_events([identify("i4", "a8", "u3"), identify("i5", "a8", "u4")]) == [
        "accepted",
        "refused",
    ]
    assert any_store.resolve_identity("a1") == "u1"


def test_a_link_rekeys_only_what_came_before_it_in_the_batch(any_store: Store) -> None:
    def anon_view(mid: str, ts: float) -> EventRecord:
        return ev(mid, "anon:a1", ts=ts, anon="a1", user=None)

    batch = [anon_view("v1", 1.0), identify("i1", "a1", "u1", ts=2.0), anon_view("v2", 3.0)]
    assert any_store.insert_events(batch, lambda acc: {"anon:a1": {"fresh": 1}}) == ["accepted"] * 3
    keys = {e.message_id: e.profile_key for e in any_store.iter_events()}
    assert keys == {"v1": "u1", "i1": "u1", "v2": "anon:a1"}
    # The fresh anonymous profile the update wrote survives the link of its own batch.
    assert any_store.get_profile_state("anon:a1") == {"fresh": 1}


# ---------------------------------------------------------------------- profiles
def test_profile_states_and_versions(any_store: Store) -> None:
    any_store.put_profile_states({"u1": {"n": 1}, "u2": {"n": 2}})
    v1 = any_store.get_profile_versions(["u1", "u2", "u3"])
    assert sorted(v1) == ["u1", "u2"] and v1["u1"] == any_store.last_profile_version
    any_store.put_profile_states({"u1": {"n": 3}})
    v2 = any_store.get_profile_versions(["u1", "u2"])
    assert v2["u1"] > v1["u1"] and v2["u2"] == v1["u2"]
    assert any_store.get_profile_states(["u1", "u2", "u3"]) == {"u1": {"n": 3}, "u2": {"n": 2}}
    any_store.delete_profile_state("u2")
    assert sorted(any_store.iter_profile_keys()) == ["u1"]
    any_store.replace_profile_states({"u5": {"n": 5}})
    assert list(any_store.iter_profile_keys()) == ["u5"]


def test_profile_update_commits_with_the_events(any_store: Store) -> None:
    any_store.insert_events([ev("m1"), ev("m2", "u2")], lambda acc: count_views(acc, any_store))
    any_store.insert_events([ev("m3"), ev("m1")], lambda acc: count_views(acc, any_store))
    assert any_store.get_profile_state("u1") == {"n": 2}  # the duplicate m1 is not applied
    assert any_store.get_profile_state("u2") == {"n": 1}


def test_versions_from_another_store_object_are_never_reused(store_target: str | Path) -> None:
    """Two store objects on one database (two processes): each write moves the version on."""
    a, b = open_store(store_target), open_store(store_target)
    try:
        a.put_profile_states({"u": {"n": 1}})
        seen = a.get_profile_versions(["u"])["u"]
        b.put_profile_states({"u": {"n": 2}})
        assert b.get_profile_versions(["u"])["u"] != seen
        a.put_profile_states({"u": {"n": 3}})
        assert a.get_profile_versions(["u"])["u"] > b.last_profile_version
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------- concurrency
def test_idempotency_and_profiles_hold_under_concurrent_writers(store_target: str | Path) -> None:
    """Four writers on two store objects send groups of their own events and shared ones to
    one profile: every messageId is stored and accepted exactly once, and the profile counts
    every stored event exactly once (no writer derives it from a state another replaced)."""
    stores = [open_store(store_target), open_store(store_target)]
    accepted = [0] * 4
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = stores[n % 2]
        try:
            for start in range(0, 60, 6):
                group = [ev(f"m{i}", "hot", ts=float(i)) for i in range(start, start + 10)]
                group += [ev(f"w{n}-{i}", "hot", ts=float(i)) for i in range(start, start + 6)]
                outcomes = store.insert_events(group, lambda acc: count_views(acc, store))
                accepted[n] += outcomes.count("accepted")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert sum(accepted) == 64 + 4 * 60 == stores[0].count_events()
        assert stores[1].get_profile_state("hot") == {"n": 64 + 4 * 60}
    finally:
        for s in stores:
            s.close()


# ---------------------------------------------------------------------- metadata, safelist
def test_meta_and_persisted_queries(any_store: Store) -> None:
    assert any_store.get_meta("k") is None
    any_store.set_meta("k", "1")
    any_store.set_meta("k", "2")
    assert any_store.get_meta("k") == "2"
    assert any_store.put_persisted_queries([("h1", "{a}", "A"), ("h2", "{b}", None)]) == 2
    assert any_store.put_persisted_queries([("h1", "{a}", "A"), ("h3", "{c}", None)]) == 1
    assert any_store.get_persisted_query("h2") == "{b}"
    assert any_store.get_persisted_query("nope") is None
    assert any_store.count_persisted_queries() == 3
    assert [h for h, _q, _n in any_store.list_persisted_queries()] == ["h1", "h2", "h3"]
    assert ("h1", "{a}", "A") in any_store.list_persisted_queries()
    assert any_store.put_persisted_queries([]) == 0


# ---------------------------------------------------------------------- privacy
def test_erasure_removes_everything_and_logs_it(any_store: Store) -> None:
    any_store.upsert_users([UserRecord("u1", {"t": 1}), UserRecord("u2")])
    any_store.insert_events([ev("v1", "anon:a1", anon="a1", user=None)])
    any_store.insert_events(
        [identify("i1", "a1", "u1"), ev("v2", "u1"), ev("v3", "u2")],
        lambda acc: count_views(acc, any_store),
    )
    row = ErasureRow(0, "digest", "sealed", 100.0)
    counts = erase_subject(any_store, "u1", record=row, log_kept_since=50.0)
    assert counts == {"events": 3, "profiles": 1, "identities": 1, "users": 1}
    assert any_store.get_user("u1") is None and any_store.get_user("u2") is not None
    assert [e.message_id for e in any_store.iter_events()] == ["v3"]
    assert any_store.resolve_identity("a1") is None
    assert list(any_store.iter_profile_keys()) == ["u2"]
    top, rows = erasures_since(any_store, 0)
    assert top == 1 and [(r.seq, r.subject, r.sealed) for r in rows] == [(1, "digest", "sealed")]
    assert erasures_since(any_store, top) == (top, [])
    erase_subject(any_store, "u2", record=ErasureRow(0, "d2", "s2", 200.0), log_kept_since=150.0)
    top2, rows2 = erasures_since(any_store, 0)
    assert top2 == 2 and [r.subject for r in rows2] == ["d2"]  # the old row went
    assert erasures_since(any_store, 0, not_before=300.0) == (2, [])


def test_retention_prunes_old_events_and_orphan_profiles(any_store: Store) -> None:
    any_store.insert_events(
        [ev("old", "u1", ts=1.0), ev("old2", "u2", ts=1.0), ev("new", "u2", ts=100.0)],
        lambda acc: count_views(acc, any_store),
    )
    assert prune_events_before(any_store, 50.0) == {"events": 2, "profiles": 1}
    assert list(any_store.iter_profile_keys()) == ["u2"] and any_store.count_events() == 1


def test_api_key_rows(any_store: Store) -> None:
    insert_api_key(any_store, ApiKeyRow("k1", "ci", ("admin", "read"), "hash1", 1.0))
    insert_api_key(any_store, ApiKeyRow("k2", "svc", (), "hash2", 2.0))
    got = get_api_key(any_store, "k1")
    assert got is not None and got.scopes == ("admin", "read") and got.revoked_at is None
    assert revoke_api_key(any_store, "k1", 5.0)
    assert not revoke_api_key(any_store, "k1", 6.0)  # already revoked
    assert not revoke_api_key(any_store, "nope", 6.0)
    assert [(k.id, k.revoked_at) for k in list_api_keys(any_store)] == [("k1", 5.0), ("k2", None)]
    assert get_api_key(any_store, "nope") is None


# ---------------------------------------------------------------------- PostgreSQL errors
def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(
        StoreUnavailable, match=r"cannot connect to PostgreSQL at .*127\.0\.0\.1:1/x"
    ):
        open_store("postgresql://postgres:secret@127.0.0.1:1/x", connect_timeout_s=2)


def test_a_missing_database_is_a_clear_error_without_the_password(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@") + "/no_such_db_x"
    with pytest.raises(StoreUnavailable, match="no_such_db_x") as info:
        open_store(url)
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_an_unsupported_url_is_refused_not_taken_for_a_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"unsupported database URL 'mysql://u:\*\*\*@h/db'"):
        open_store("mysql://u:pw@h/db")
    assert not Path("mysql:").exists()


def test_integer_timestamps_are_stored_as_given(any_store: Store) -> None:
    mixed = [ev("a", ts=1.5), EventRecord("b", "view", "u1", 2, 2, "h", user_id="u1")]  # type: ignore[arg-type]
    assert any_store.insert_events(mixed) == ["accepted", "accepted"]
    assert [e.ts for e in any_store.iter_events()] == [1.5, 2.0]


def test_reads_survive_the_server_dropping_pooled_connections(pg_empty: str) -> None:
    store = open_store(pg_empty, pool_min=2, pool_max=2)
    try:
        store.upsert_items([ItemRecord("a", "A")])
        with psycopg.connect(pg_empty, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        assert store.count_items() == 1  # a dropped connection is replaced, the read retried
        assert store.get_items(["a"])["a"].title == "A"
        assert store.ping()
    finally:
        store.close()


def test_experiment_exposures_attributions_and_counts(any_store: Store) -> None:
    """Exposures are sticky (the first row wins), move on identify, count per variant with the
    attributed events and the revenue of purchases after exposure, and go on erasure."""
    s = any_store
    assert s.record_exposures([("exp", "anon:v", "b", 10.0), ("exp", "u2", "a", 10.0)]) == 2
    assert s.record_exposures([("exp", "anon:v", "a", 11.0)]) == 0  # sticky: first row wins
    assert s.exposures_of("anon:v") == {"exp": "b"}
    assert s.record_exposures([("other", "u1", "x", 9.0), ("exp", "u1", "a", 9.0)]) == 2
    # identify anon:v -> u1: u1 keeps its own "exp" row; "other" stays with u1 too
    assert s.merge_exposures("anon:v", "u1") == 0
    assert s.exposures_of("anon:v") == {}
    assert s.exposures_of("u1") == {"exp": "a", "other": "x"}
    assert s.record_exposures([("exp", "anon:w", "b", 12.0)]) == 1
    assert s.merge_exposures("anon:w", "u3") == 1
    assert s.exposures_of("u3") == {"exp": "b"}

    def attr(mid: str, subject: str, variant: str, type: str, ts: float) -> Attribution:
        return Attribution(mid, "exp", variant, subject, type, "i1", "hybrid", "cf", 0.0, ts)

    rows = [
        attr("m1", "u1", "a", "click", 20.0),
        attr("m2", "u1", "a", "click", 21.0),
        attr("m3", "u3", "b", "purchase", 22.0),
        attr("m4", "u2", "a", "click", 1.0),  # before u2's exposure: not counted
    ]
    assert s.record_attributions(rows) == 4
    assert s.record_attributions(rows[:1]) == 0  # a replayed event is ignored
    purchase = replace(
        ev("p1", "u3", ts=23.0, type="purchase"), properties={"price": 10.0, "quantity": 2}
    )
    s.insert_events([purchase])
    counts = s.experiment_counts("exp")
    assert counts["a"] == VariantCounts(exposed=2, clickers=1, clicks=2)
    assert counts["b"] == VariantCounts(exposed=1, purchasers=1, revenue=20.0)
    assert ("a", "click", "hybrid", "cf", 3) in s.attributions_by("exp")
    assert s.forget_experiment_subjects(["u1", "u2"]) == 6  # 3 exposures + 3 attributions
    assert s.exposures_of("u1") == {}
    assert set(s.experiment_counts("exp")) == {"b"}

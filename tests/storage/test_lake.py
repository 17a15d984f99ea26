"""The Parquet lake (storage/lake.py): read back with pyarrow it holds what the store holds, every
file lands atomically, and a re-export rewrites only the days that changed."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from storage import open_store
from storage.lake import (
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    MANIFEST,
    USERS_SCHEMA,
    LakeError,
    LakeExporter,
    _exclusive,
    day_name,
    day_of,
    parse_day,
    read_manifest,
)
from storage.privacy import prune_events_before
from storage.types import EventRecord, ItemRecord, Store, UserRecord, anonymous_key

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FEATURES = ("engagement_score", "views_7d")


def event(n: int, key: str, etype: str, ts: float, **kw: object) -> EventRecord:
    return EventRecord(
        message_id=f"m{n}",
        type=etype,
        profile_key=key,
        ts=ts,
        received_at=ts + 0.25,
        payload_hash=f"h{n}",
        user_id=kw.pop("user_id", None if key.startswith("anon:") else key),  # type: ignore[arg-type]
        anonymous_id=kw.pop("anonymous_id", None),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(store_target: str | Path) -> Iterator[Store]:
    """The same store on SQLite and on PostgreSQL (``store_target`` is parametrized)."""
    s = open_store(store_target)
    s.upsert_items(
        [
            ItemRecord(
                f"i{k}",
                f"item {k}",
                categories=("Shoes", "Sale") if k % 2 else ("Bags",),
                tags=("t",),
                price=None if k == 3 else 10.5 + k,
                attributes={"color": "red"},
                created_at=T0 - 5 * DAY,
                updated_at=T0 - DAY + 0.123456,
            )
            for k in range(6)
        ]
    )
    s.upsert_users([UserRecord("u1", {"tier": "gold"}, True, False, T0 - 3 * DAY)])
    events = []
    n = 0
    for day in range(4):
        for j in range(5 + day):
            n += 1
            key = "u1" if j % 3 else anonymous_key("a1")
            events.append(
                event(
                    n,
                    key,
                    ("view", "purchase", "rate")[j % 3],
                    T0 + day * DAY + j * 1000.0 + 0.000123,
                    item_id=f"i{j % 6}",
                    session_id=f"s{day}" if j % 2 else None,
                    properties={"price": 12.5, "orderId": f"o{n}"} if j % 3 == 1 else {},
                    anonymous_id="a1" if key.startswith("anon:") else None,
                )
            )
    s.insert_events(events)
    yield s
    s.close()


def export(store: Store, root: Path, **kw: object) -> object:
    rows = [("u1", {"engagement_score": 3.5, "views_7d": 2.0}), ("anon:a1", {"views_7d": 1.0})]
    return LakeExporter(store, root).export(
        as_of=T0 + 10 * DAY, profile_features=rows, feature_names=FEATURES, **kw
    )


def store_events(store: Store) -> dict[str, EventRecord]:
    return {ev.message_id: ev for ev in store.iter_events()}


def lake_events(root: Path) -> pa.Table:
    return ds.dataset(root / "events", format="parquet", partitioning="hive").to_table()


def test_export_reads_back_with_pyarrow_like_the_store(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    result = export(store, root)
    stored = store_events(store)
    table = lake_events(root)
    # counts: all events, per UTC day partition, and the snapshot tables
    assert table.num_rows == len(stored) == result.events_written  # type: ignore[attr-defined]
    per_day = Counter(str(d) for d in table.column("event_date").to_pylist())
    assert per_day == Counter(day_name(day_of(ev.ts)) for ev in stored.values())
    assert pq.read_table(root / "items").num_rows == store.count_items() == 6
    assert pq.read_table(root / "users").num_rows == store.count_users() == 1
    # the schema is the documented one (stable names, UTC timestamps)
    one = pq.read_schema(next((root / "events").glob("event_date=*/part-00000.parquet")))
    assert one.equals(EVENTS_SCHEMA)
    assert pq.read_schema(root / "items" / "part-00000.parquet").equals(ITEMS_SCHEMA)
    assert pq.read_schema(root / "users" / "part-00000.parquet").equals(USERS_SCHEMA)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    # a sample of rows, field by field
    rows = {r["message_id"]: r for r in table.to_pylist()}
    for message_id in ("m1", "m2", "m3", "m9", sorted(stored)[-1]):
        ev, row = stored[message_id], rows[message_id]
        assert row["type"] == ev.type and row["profile_key"] == ev.profile_key
        assert row["user_id"] == ev.user_id and row["anonymous_id"] == ev.anonymous_id
        assert row["item_id"] == ev.item_id and row["session_id"] == ev.session_id
        assert row["channel"] == ev.channel and row["flags"] == ev.flags
        assert row["ts"] == datetime.fromtimestamp(round(ev.ts * 1e6) / 1e6, UTC)
        assert row["ts"].tzinfo is not None
        assert abs(row["received_at"].timestamp() - ev.received_at) < 1e-6
        assert json.loads(row["properties"]) == dict(ev.properties)
        assert str(row["event_date"]) == day_name(day_of(ev.ts))
    item = pq.read_table(root / "items").to_pylist()[1]
    stored_item = store.get_items(["i1"])["i1"]
    assert item["categories"] == list(stored_item.categories) == ["Shoes", "Sale"]
    assert item["price"] == stored_item.price and json.loads(item["attributes"]) == {"color": "red"}
    assert abs(item["updated_at"].timestamp() - stored_item.updated_at) < 1e-6
    assert pq.read_table(root / "items").to_pylist()[3]["price"] is None
    user = pq.read_table(root / "users").to_pylist()[0]
    assert (user["id"], json.loads(user["traits"]), user["consent_tracking"]) == (
        "u1",
        {"tier": "gold"},
        False,
    )
    profiles = pq.read_table(root / "profiles").to_pylist()
    assert [p["profile_key"] for p in profiles] == ["u1", "anon:a1"]
    assert profiles[1]["engagement_score"] == 0.0 and profiles[0]["views_7d"] == 2.0
    assert profiles[0]["as_of"].timestamp() == T0 + 10 * DAY
    manifest = read_manifest(root)
    assert manifest["tables"]["events"]["rows"] == len(stored)
    assert manifest["as_of"] == "2026-01-11T00:00:00.000Z"
    # written atomically: nothing but the final files (no temp files left behind)
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert [p.name for p in leftovers] == [".lock"]


def test_reexport_rewrites_only_changed_days(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    first = export(store, root)
    assert len(first.partitions_written) == 4  # type: ignore[attr-defined]
    before = {p: p.stat().st_mtime_ns for p in (root / "events").rglob("*.parquet")}

    again = export(store, root)
    assert again.partitions_written == [] and len(again.partitions_skipped) == 4  # type: ignore[attr-defined]
    assert {p: p.stat().st_mtime_ns for p in (root / "events").rglob("*.parquet")} == before

    # a late event for day 2 rewrites day 2 only
    store.insert_events([event(900, "u1", "view", T0 + 2 * DAY + 5.0, item_id="i1")])
    late = export(store, root)
    assert late.partitions_written == [day_name(day_of(T0 + 2 * DAY))]  # type: ignore[attr-defined]

    # an identity link re-keys the anonymous events: the days that held them are rewritten
    store.insert_events(
        [event(901, "u1", "identify", T0 + 3 * DAY + 50_000, anonymous_id="a1", user_id="u1")]
    )
    linked = export(store, root)
    anon_days = {
        day_name(day_of(T0 + d * DAY)) for d in range(4)
    }  # every day had an anonymous event
    assert set(linked.partitions_written) == anon_days  # type: ignore[attr-defined]
    table = lake_events(root)
    assert not any(k.startswith("anon:") for k in table.column("profile_key").to_pylist())
    assert table.num_rows == store.count_events()

    # pruning day 0 away removes its partition; --since/--until bound what is touched
    prune_events_before(store, T0 + DAY)
    bounded = export(store, root, first_day=day_of(T0 + 2 * DAY))
    assert bounded.partitions_removed == []  # type: ignore[attr-defined]
    assert (root / "events" / f"event_date={day_name(day_of(T0))}").is_dir()
    assert len(bounded.partitions_skipped) == 2  # type: ignore[attr-defined]
    full = export(store, root)
    assert full.partitions_removed == [day_name(day_of(T0))]  # type: ignore[attr-defined]
    assert lake_events(root).num_rows == store.count_events()

    forced = export(store, root, overwrite=True, last_day=day_of(T0 + DAY))
    assert forced.partitions_written == [day_name(day_of(T0 + DAY))]  # type: ignore[attr-defined]


def test_interrupted_export_resumes(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "lake"
    import storage.lake as lake

    real = lake._write_table
    calls = {"n": 0}

    def dying(target: Path, schema: pa.Schema, batches: object) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(target, schema, batches)  # type: ignore[arg-type]

    monkeypatch.setattr(lake, "_write_table", dying)
    with pytest.raises(OSError, match="disk full"):
        export(store, root)
    monkeypatch.setattr(lake, "_write_table", real)
    # the two finished days are in the manifest; the third left no file and no temp file
    assert len(read_manifest(root)["partitions"]) == 2
    assert not [p for p in root.rglob(".part-*")]
    resumed = export(store, root)
    assert len(resumed.partitions_skipped) == 2 and len(resumed.partitions_written) == 2  # type: ignore[attr-defined]
    assert lake_events(root).num_rows == store.count_events()


def test_one_export_at_a_time_and_a_foreign_manifest(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    with _exclusive(root), pytest.raises(LakeError, match="another export"), _exclusive(root):
        pass
    root.mkdir(exist_ok=True)
    (root / MANIFEST).write_text(json.dumps({"format": 99}))
    with pytest.raises(LakeError, match="format 99"):
        read_manifest(root)


def test_parse_day() -> None:
    assert day_name(parse_day("2026-01-02")) == "2026-01-02"
    assert day_name(parse_day("2026-01-02T23:30:00-02:00")) == "2026-01-03"
    with pytest.raises(ValueError, match="not a date"):
        parse_day("yesterday")

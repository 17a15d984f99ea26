"""Profiles built incrementally (live, arrival order) equal a rebuild from the log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.cli.main import main
from profiles.ingest import IngestionService
from profiles.state import ProfileState
from profiles.types import ProfileConfig
from storage import open_store
from tests.pg import pg_empty, pg_url, store_target
from tests.conftest import NOW

CATS = {f"i{k}": (["Shoes", "Bags", "Dresses"][k % 3],) for k in range(20)}


def random_events(seed: int, n: int) -> list[dict]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    out = []
    for k in range(n):
        etype = rng.choice(["view", "view", "click", "add_to_cart", "purchase", "rate", "search"])
        user = rng.choice(["u1", "u2", "u3"])
        ev = {
            "messageId": f"r{seed}-{k}",
            "type": etype,
            "userId": user,
            "sessionId": f"{user}-s{rng.randrange(6)}",
            "timestamp": NOW - rng.uniform(0, 60 * 86400),
            "channel": rng.choice(["web", "mobile", "email"]),
        }
        if etype != "search":
            ev["itemId"] = f"i{rng.randrange(20)}"
        else:
            ev["properties"] = {"query": "red shoes"}
        if etype in ("purchase", "add_to_cart"):
            ev["properties"] = {
                "price": round(rng.uniform(5, 200), 2),
                "quantity": rng.randint(1, 3),
            }
        if etype == "rate":
            ev["properties"] = {"value": rng.choice([1, 2.5, 4, 5])}
        out.append(ev)
    # Anonymous history that later joins u1.
    out += [
        {
            "messageId": f"an{k}",
            "type": "view",
            "anonymousId": "anon-x",
            "itemId": f"i{k}",
            "timestamp": NOW - k * 3600,
            "sessionId": "anon-s",
        }
        for k in range(5)
    ]
    out.append(
        {
            "messageId": "idf",
            "type": "identify",
            "userId": "u1",
            "anonymousId": "anon-x",
            "timestamp": NOW - 100,
        }
    )
    return out


def snapshot(service: IngestionService, keys: list[str]) -> dict[str, dict]:  # type: ignore[type-arg]
    out = {}
    for key in keys:
        st = service.profile(key)
        assert st is not None
        out[key] = {
            "features": st.features(NOW, service.profile_config),
            "affinities": [(c, round(s, 9)) for c, s in st.affinities(NOW, service.profile_config)],
            "history": st.recent_history(50),
            "last_channel": st.last_channel,
        }
    return out


def test_incremental_equals_rebuild(store_target: str | Path) -> None:
    store = open_store(store_target)
    service = IngestionService(
        store,
        categories=lambda i: CATS.get(i, ()),
        clock=lambda: NOW,
        profile_config=ProfileConfig(history_size=30),
    )
    events = random_events(1, 600)
    rng = random.Random(9)
    rng.shuffle(events)  # arrival order differs from timestamp order
    pos = 0
    while pos < len(events):  # uneven batches
        step = rng.randint(1, 40)
        result = service.ingest_sync(events[pos : pos + step])
        assert result.count("rejected") == 0
        pos += step
    keys = ["u1", "u2", "u3"]
    live = snapshot(service, keys)
    assert store.get_profile_state("anon:anon-x") is None
    assert service.rebuild_profiles() == 3
    assert snapshot(service, keys) == live
    store.close()


def test_merge_is_commutative() -> None:
    from storage.types import EventRecord

    cfg = ProfileConfig()
    evs = [
        EventRecord(
            f"m{k}",
            "view",
            "u",
            NOW - k * 5000,
            NOW,
            "h",
            item_id=f"i{k % 4}",
            session_id=f"s{k % 3}",
        )
        for k in range(30)
    ]
    whole = ProfileState()
    for e in evs:
        whole.apply(e, cfg, lambda i: CATS.get(i, ()))
    a, b = ProfileState(), ProfileState()
    for e in evs[::2]:
        a.apply(e, cfg, lambda i: CATS.get(i, ()))
    for e in evs[1::2]:
        b.apply(e, cfg, lambda i: CATS.get(i, ()))
    a.merge(b, cfg)
    assert a.features(NOW, cfg) == whole.features(NOW, cfg)
    merged, expected = a.affinities(NOW, cfg), whole.affinities(NOW, cfg)
    assert [c for c, _ in merged] == [c for c, _ in expected]
    assert [v for _, v in merged] == pytest.approx([v for _, v in expected])


def test_cli_rebuild(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    path = tmp_path / "events.ndjson"
    import orjson

    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in random_events(2, 50)))
    assert main(["import", "events", str(path), "--data-dir", str(data)]) == 0
    assert main(["profiles", "rebuild", "--data-dir", str(data)]) == 0
    assert "rebuilt 3 profiles" in capsys.readouterr().err

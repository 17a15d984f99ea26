"""`tailor export parquet DIR`: the command writes the lake (docs/LAKE.md), profile features are
Tailor's own (`ProfileState.features` as of the export), and a re-run resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from gateway.cli.main import main
from gateway.settings import load_settings
from gateway.wiring import build_services
from profiles.state import ProfileState
from storage.lake import lake_as_of
from storage.types import ItemRecord
from tests.conftest import SECRET

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def raw(n: int, etype: str, at: float, **kw: Any) -> dict[str, Any]:
    return {"messageId": f"e{n}", "type": etype, "timestamp": at * 1000, **kw}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "var"
    settings = load_settings(environ={}, data_dir=data, jwt_secret=SECRET, encoder="hashing")
    services = build_services(settings)
    try:
        services.store.upsert_items(
            [ItemRecord(f"i{k}", f"item {k}", categories=(f"c{k % 3}",)) for k in range(6)]
        )
        services.catalog.update(services.store.iter_items())
        events = []
        for n in range(40):
            user = {"userId": f"u{n % 4}"} if n % 5 else {"anonymousId": f"a{n % 2}"}
            etype = ("view", "click", "add_to_cart", "purchase", "rate")[n % 5]
            props: dict[str, Any] = {}
            if etype == "purchase":
                props = {"price": 9.5 + n, "quantity": 2, "orderId": f"o{n // 10}"}
            elif etype == "rate":
                props = {"value": 4}
            events.append(
                raw(
                    n,
                    etype,
                    T0 + n * 7_200.0,
                    itemId=f"i{n % 6}",
                    sessionId=f"s{n // 6}",
                    properties=props,
                    **user,
                )
            )
        events.append(raw(99, "identify", T0 + 50 * 7_200.0, userId="u1", anonymousId="a1"))
        result = services.ingest.ingest_sync(events)
        assert result.count("accepted") == len(events)
    finally:
        services.store.close()
    return data


def test_export_command_writes_the_lake_and_resumes(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    assert main(["export", "parquet", str(lake), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "41 events in 5 day partitions written (0 unchanged, 0 removed)" in out, out
    assert "6 items" in out and "rows/s" in out

    settings = load_settings(environ={}, data_dir=data_dir, jwt_secret=SECRET, encoder="hashing")
    services = build_services(settings)
    try:
        events = ds.dataset(lake / "events", format="parquet", partitioning="hive").to_table()
        assert events.num_rows == services.store.count_events() == 41
        # anonymous a1 was linked to u1: its events carry u1's key in the lake as in the store
        keys = set(events.column("profile_key").to_pylist())
        assert "anon:a1" not in keys and "anon:a0" in keys
        # profile features are Tailor's own, as of the export
        as_of = lake_as_of(lake)
        table = pq.read_table(lake / "profiles").to_pylist()
        assert sorted(r["profile_key"] for r in table) == sorted(services.store.iter_profile_keys())
        for row in table:
            state = ProfileState.from_json(services.store.get_profile_state(row["profile_key"]))
            expected = state.features(as_of, services.profile_config)
            assert {k: row[k] for k in expected} == pytest.approx(expected)
            assert row["as_of"].timestamp() == pytest.approx(as_of)
    finally:
        services.store.close()

    assert main(["export", "parquet", str(lake), "--data-dir", str(data_dir)]) == 0
    assert "0 events in 0 day partitions written (5 unchanged" in capsys.readouterr().out
    assert (
        main(
            [
                "export",
                "parquet",
                str(lake),
                "--data-dir",
                str(data_dir),
                "--since",
                "2026-01-02",
                "--until",
                "2026-01-02",
                "--overwrite",
            ]
        )
        == 0
    )
    assert "in 1 day partitions written (0 unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-02-01", "--until", "2026-01-01"], "is after --until"),
        (["--since", "last week"], "not a date"),
    ],
)
def test_export_refuses_bad_ranges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["export", "parquet", str(tmp_path / "lake"), "--data-dir", str(tmp_path), *args])
    assert code == 2
    assert message in capsys.readouterr().err

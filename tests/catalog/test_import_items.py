"""Catalog imports: validation with per-row errors, all-or-nothing by default, CSV and JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from catalog.importer import import_items
from catalog.types import ImportRejected
from gateway.cli.main import main
from storage import open_store
from tests.conftest import item_rows


def _jsonl(path: Path, rows: list[dict]) -> Path:  # type: ignore[type-arg]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def test_valid_jsonl_import(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db")
    report = import_items(store, _jsonl(tmp_path / "items.jsonl", item_rows(5)), now=1000.0)
    assert (report.read, report.written, report.errors) == (5, 5, [])
    got = store.get_items(["i1", "i3"])
    assert got["i1"].categories == ("Dresses",)
    assert got["i3"].price == 13.0
    assert got["i1"].created_at == 1000.0


def test_invalid_rows_reported_and_nothing_imported(tmp_path: Path) -> None:
    rows = item_rows(4)
    rows[1]["price"] = -3
    rows[2]["currency"] = "euro"
    del rows[3]["title"]
    path = _jsonl(tmp_path / "items.jsonl", rows)
    with path.open("ab") as fh:
        fh.write(b"{broken\n")
    store = open_store(tmp_path / "t.db")
    with pytest.raises(ImportRejected) as info:
        import_items(store, path)
    errors = {(e.row, e.field) for e in info.value.report.errors}
    assert errors == {(2, "price"), (3, "currency"), (4, "title"), (5, "-")}
    assert "row 2: price: must be >= 0" in [str(e) for e in info.value.report.errors]
    assert store.count_items() == 0
    rejects = [
        json.loads(line)
        for line in (tmp_path / "items.jsonl.rejects.jsonl").read_text().splitlines()
    ]
    assert len(rejects) == 4


def test_skip_invalid_writes_the_valid_rows(tmp_path: Path) -> None:
    rows = item_rows(3)
    rows[0]["id"] = "bad id with spaces"
    store = open_store(tmp_path / "t.db")
    report = import_items(store, _jsonl(tmp_path / "i.jsonl", rows), skip_invalid=True)
    assert report.written == 2 and len(report.errors) == 1
    assert report.errors[0].field == "id"
    assert store.count_items() == 2


def test_csv_with_lists_attributes_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "sku,name,categories,price,available,attributes.color\n"
        "A1,Red Dress,Women|Dresses,49.90,true,red\n"
        "A2,Blue Jeans,Men|Jeans,59.00,false,blue\n"
    )
    store = open_store(tmp_path / "t.db")
    report = import_items(store, path, mapping={"sku": "id", "name": "title"})
    assert report.written == 2
    a2 = store.get_items(["A2"])["A2"]
    assert a2.categories == ("Men", "Jeans")
    assert a2.available is False
    assert a2.attributes == {"color": "blue"}


def test_unknown_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("id,title,colour\nA1,Dress,red\n")
    with pytest.raises(ImportRejected, match="colour"):
        import_items(open_store(tmp_path / "t.db"), path)


def test_reimport_updates_in_place(tmp_path: Path) -> None:
    store = open_store(tmp_path / "t.db")
    import_items(store, _jsonl(tmp_path / "a.jsonl", item_rows(2)))
    rows = item_rows(2)
    rows[0]["title"] = "Renamed"
    import_items(store, _jsonl(tmp_path / "b.jsonl", rows))
    assert store.count_items() == 2
    assert store.get_items(["i1"])["i1"].title == "Renamed"


def test_cli_import_items_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _jsonl(tmp_path / "good.jsonl", item_rows(3))
    data = tmp_path / "var"
    assert main(["import", "items", str(good), "--data-dir", str(data)]) == 0
    bad_rows = item_rows(2)
    bad_rows[0]["price"] = "cheap"
    bad = _jsonl(tmp_path / "bad.jsonl", bad_rows)
    assert main(["import", "items", str(bad), "--data-dir", str(data)]) == 1
    assert "row 1: price" in capsys.readouterr().err
    assert main(["import", "items", str(tmp_path / "missing.jsonl"), "--data-dir", str(data)]) == 2
    assert open_store(data / "tailor.db").count_items() == 3

"""`tailor backup` / `tailor restore`: an online backup of a running gateway's store and model
artifacts, restored into a new data dir that then serves the same data and models."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.cli.main import main
from gateway.models import refresh_models
from gateway.wiring import model_stores
from storage.backup import BackupError, backup, read_manifest, restore
from tests.conftest import SECRET, FakeClock, Gateway
from tests.gateway.test_recommendations import open_shop


@pytest.fixture
def keep_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_backup_of_a_running_gateway_restores_elsewhere(
    gateway: Gateway, tmp_path: Path, keep_logging: None
) -> None:
    await open_shop(gateway)
    gateway.services.segments.train()
    refresh_models(gateway.services, model_stores(gateway.app.state.settings))
    # A half-written version is not a version: it stays out of the backup.
    (gateway.data_dir / "models" / "cf" / "v000099").mkdir()
    services = gateway.services
    counts = (services.store.count_items(), services.store.count_events())
    versions = (
        services.content.version,
        services.recommender.cf.version,
        services.segments.version,
    )
    dest = tmp_path / "backup"
    assert main(["backup", str(dest), "--data-dir", str(gateway.data_dir)]) == 0
    manifest = json.loads((dest / "backup.json").read_text())
    assert (manifest["counts"]["items"], manifest["counts"]["events"]) == counts
    assert manifest["artifacts"]["models/cf"] == [versions[1]]
    assert manifest["artifacts"]["index"] == [versions[0]]
    assert manifest["artifacts"]["models/segments"] == [versions[2]]
    assert not (dest / "models" / "cf" / "v000099").exists()
    # Events written after the backup are not in it.
    await gateway.services.ingest.ingest([{"type": "view", "userId": "late", "itemId": "i1"}])

    target = tmp_path / "restored"
    assert main(["restore", str(dest), "--data-dir", str(target)]) == 0
    assert main(["restore", str(dest), "--data-dir", str(target)]) == 1  # refuses to overwrite
    assert main(["restore", str(dest), "--data-dir", str(target), "--force"]) == 0

    app = create_app(data_dir=target, jwt_secret=SECRET, encoder="hashing", clock=FakeClock())
    async with app.router.lifespan_context(app):
        s = app.state.services
        assert (s.store.count_items(), s.store.count_events()) == counts
        assert (s.content.version, s.recommender.cf.version, s.segments.version) == versions
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as c:
            r = await c.get("/readyz")
            assert r.status_code == 200, r.text
            q = '{ similarItems(itemId: "i1", first: 3) { item { id } } }'
            r = await c.post("/graphql", json={"query": q})
            assert len(r.json()["data"]["similarItems"]) == 3, r.json()


def test_a_corrupted_backup_is_refused(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "var"
    data.mkdir()
    with sqlite3.connect(data / "tailor.db") as db:
        db.execute("create table items (id text)")
        db.execute("create table events (id text)")
        db.execute("insert into items values ('a')")
    db.close()
    dest = tmp_path / "b"
    manifest = backup(data, dest)
    assert manifest["counts"] == {"items": 1, "events": 0}
    assert read_manifest(dest)["files"]["tailor.db"] == manifest["files"]["tailor.db"]
    with pytest.raises(BackupError, match="not empty"):
        backup(data, dest)
    broken = tmp_path / "broken"
    shutil.copytree(dest, broken)
    with (broken / "tailor.db").open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\xff" * 16)
    with pytest.raises(BackupError, match="corrupted"):
        restore(broken, tmp_path / "new")
    assert not (tmp_path / "new" / "tailor.db").exists()
    with pytest.raises(BackupError, match="not a Tailor backup"):
        restore(tmp_path, tmp_path / "new")
    with pytest.raises(BackupError, match="no store"):
        backup(tmp_path / "nothing", tmp_path / "c")


def test_backup_and_restore_refuse_a_postgresql_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tailor backup` copies the embedded SQLite file; on PostgreSQL it says to use pg_dump."""
    monkeypatch.setenv("TAILOR_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/none")
    assert main(["backup", str(tmp_path / "b"), "--data-dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "pg_dump" in captured.out + captured.err
    assert main(["restore", str(tmp_path / "b"), "--data-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "b").exists()

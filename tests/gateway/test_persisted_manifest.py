"""`tailor persisted-queries import|export` in Apollo's persisted query manifest format, and a
mobile app release in safelist mode: only the manifest's operations run, by hash over GET."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.cli.main import main
from tests.conftest import SECRET

TRENDING = "query Trending($first: Int!) { trending(first: $first) { score source item { id } } }"
TRACK = "mutation Track($e: [EventInput!]!) { track(events: $e) { accepted } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(*bodies: str, **overrides: Any) -> dict[str, Any]:
    ops = [
        {"id": sha(b), "name": b.split()[1].split("(")[0], "type": b.split()[0], "body": b}
        for b in bodies
    ]
    return {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": ops,
        **overrides,
    }


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_import_then_export_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "var")
    source = write(tmp_path / "in.json", manifest(TRENDING, TRACK))
    assert main(["persisted-queries", "import", str(source), "--data-dir", data]) == 0
    assert "registered 2 new of 2" in capsys.readouterr().err
    # Importing again adds nothing.
    assert main(["persisted-queries", "import", str(source), "--data-dir", data]) == 0
    assert "registered 0 new of 2" in capsys.readouterr().err
    out = tmp_path / "out.json"
    assert main(["persisted-queries", "export", str(out), "--data-dir", data]) == 0
    exported = json.loads(out.read_text())
    assert exported["format"] == "apollo-persisted-query-manifest"
    assert exported["version"] == 1
    by_name = {op["name"]: op for op in exported["operations"]}
    assert by_name["Trending"] == {
        "id": sha(TRENDING),
        "name": "Trending",
        "type": "query",
        "body": TRENDING,
    }
    assert by_name["Track"]["type"] == "mutation"
    capsys.readouterr()
    assert main(["persisted-queries", "export", "-", "--data-dir", data]) == 0
    assert json.loads(capsys.readouterr().out) == exported


def test_invalid_operations_register_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "var")
    bad = "query Bad { trending(first: 1) { noSuchField } }"
    source = write(tmp_path / "in.json", manifest(TRENDING, bad))
    assert main(["persisted-queries", "import", str(source), "--data-dir", data]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "Bad" in err and "noSuchField" in err and "nothing registered" in err
    assert main(["persisted-queries", "export", "-", "--data-dir", data]) == 2
    assert "nothing registered yet" in capsys.readouterr().err
    # An id that is not the sha256 of its body: refused as unreadable input.
    doc = manifest(TRENDING)
    doc["operations"][0]["id"] = "0" * 64
    assert (
        main(
            [
                "persisted-queries",
                "import",
                str(write(tmp_path / "x.json", doc)),
                "--data-dir",
                data,
            ]
        )
        == 2
    )
    assert "not the sha256" in " ".join(capsys.readouterr().err.split())  # rich wraps lines


async def test_an_app_release_in_safelist_mode(tmp_path: Path) -> None:
    """What docs/clients.md describes: import the release's manifest, turn safelist on; the app's
    operations run by hash (GET, cacheable), anything else is refused."""
    data = tmp_path / "var"
    source = write(tmp_path / "release-1.4.json", manifest(TRENDING, TRACK))
    assert main(["persisted-queries", "import", str(source), "--data-dir", str(data)]) == 0
    app = create_app(
        data_dir=data, jwt_secret=SECRET, encoder="hashing", persisted_queries_safelist=True
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        ext = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha(TRENDING)}})
        r = await c.get(
            "/graphql",
            params={
                "extensions": ext,
                "variables": json.dumps({"first": 2}),
                "operationName": "Trending",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"data": {"trending": []}}
        assert r.headers["cache-control"].startswith("public")
        other = await c.post("/graphql", json={"query": "{ trending(first: 50) { score } }"})
        assert other.status_code == 400
        assert other.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"

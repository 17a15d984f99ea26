"""The persisted-query manifest of the examples (examples/persisted-query-manifest.json, Apollo's
format): generated from examples/operations/*.graphql by @apollo/generate-persisted-query-manifest,
kept up to date, and loaded by the CLI into a gateway that then runs every operation by its id —
in safelist mode, as an app release would ship it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import load_settings
from tests.clients.conftest import (
    EXAMPLES,
    MANIFEST,
    PQ_LOAD_COMMAND,
    SECRET,
    cli,
    gateway_env,
    run_node,
)


@pytest.mark.slow
def test_committed_manifest_is_generated_from_the_operations(
    examples_built: Path, tmp_path: Path
) -> None:
    config = tmp_path / "manifest.config.json"
    out = tmp_path / "manifest.json"
    config.write_text(json.dumps({"documents": ["operations/**/*.graphql"], "output": str(out)}))
    run_node(
        "manifest",
        [
            "node_modules/@apollo/generate-persisted-query-manifest/cli.js",
            "--config",
            str(config),
        ],
        cwd=examples_built,
        env={},
        timeout=120,
    )
    assert json.loads(out.read_text()) == json.loads(MANIFEST.read_text()), (
        "examples/persisted-query-manifest.json is stale: run `npm run manifest` in examples/"
    )


def _operations() -> list[dict]:
    doc = json.loads(MANIFEST.read_text())
    assert doc["format"] == "apollo-persisted-query-manifest" and doc["version"] == 1
    return doc["operations"]


def test_manifest_covers_every_operation_file() -> None:
    names = {op["name"] for op in _operations()}
    files = {p.stem for p in (EXAMPLES / "operations").glob("*.graphql")}
    assert names == files
    # The shared fragments (operations/fragments/) are not operations: each is carried in the
    # body of every operation that spreads it, and none is dead.
    shared = {
        m.group(1)
        for p in (EXAMPLES / "operations" / "fragments").glob("*.graphql")
        for m in re.finditer(r"^fragment (\w+) on ", p.read_text(), re.MULTILINE)
    }
    assert shared >= {"ItemCard", "RecommendationCard"}
    for name in shared:
        users = [op for op in _operations() if f"...{name}" in op["body"]]
        assert users, f"fragment {name} is used by no operation"
        assert all(f"fragment {name} on " in op["body"] for op in users)


# Variables that make each query run on an empty store without an error.
VARIABLES = {
    "Trending": {"first": 3},
    "RecommendedForYou": {"first": 3},
    "SegmentPicks": {"first": 3},
    "Viewer": {},
}


async def test_cli_imports_the_manifest_and_safelist_mode_runs_it(tmp_path: Path) -> None:
    """``tailor persisted-queries import`` (validated against the schema), ``export`` gives it
    back, and a safelist gateway runs the operations by id only."""
    data_dir = tmp_path / "var"
    done = subprocess.run(
        cli("persisted-queries", PQ_LOAD_COMMAND, str(MANIFEST), "--data-dir", str(data_dir)),
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    operations = _operations()
    assert f"{len(operations)}" in done.stdout + done.stderr
    # What was registered comes back out in the same format, operation for operation.
    exported = subprocess.run(
        cli("persisted-queries", "export", "-", "--data-dir", str(data_dir)),
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    back = json.loads(exported.stdout)
    assert back["format"] == "apollo-persisted-query-manifest"
    assert sorted((op["id"], op["name"], op["body"]) for op in back["operations"]) == sorted(
        (op["id"], op["name"], op["body"]) for op in operations
    )
    settings = load_settings(
        environ={},
        data_dir=data_dir,
        jwt_secret=SECRET,
        encoder="hashing",
        persisted_queries_safelist=True,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        for op in operations:
            if op["type"] != "query" or op["name"] not in VARIABLES:
                continue
            r = await c.get(
                "/graphql",
                params={
                    "operationName": op["name"],
                    "variables": json.dumps(VARIABLES[op["name"]]),
                    "extensions": json.dumps(
                        {"persistedQuery": {"version": 1, "sha256Hash": op["id"]}}
                    ),
                },
                headers={"x-anonymous-id": "manifest-test"},
            )
            assert r.status_code == 200, (op["name"], r.text)
            assert "errors" not in r.json(), (op["name"], r.text)
        # Safelist mode: an operation outside the manifest does not run.
        r = await c.get("/graphql", params={"query": "{ trending(first: 1) { score } }"})
        assert r.status_code == 400
        assert "PERSISTED_QUERY_NOT_IN_LIST" in r.text

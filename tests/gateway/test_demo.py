"""`tailor demo` loads the generated world through the import paths and serves it."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.app import create_app
from gateway.cli.demo_world import load_demo_world
from gateway.settings import load_settings
from tests.conftest import SECRET


async def test_demo_world_loads_and_serves(tmp_path: Path) -> None:
    settings = load_settings(
        environ={}, data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing"
    )
    info = load_demo_world(settings, seed=7, n_users=80, n_items=300)
    assert info["items"] == 300 and info["users"] == 80
    assert info["events"] > 1000
    again = load_demo_world(settings, seed=7, n_users=80, n_items=300)  # reuses the data dir
    assert again["events"] == info["events"]
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        r = await c.post(
            "/graphql", json={"query": "{ trending(first: 3) { item { id title } score } }"}
        )
        rows = r.json()["data"]["trending"]
        assert len(rows) == 3 and all(row["item"]["title"] for row in rows)
        from gateway.security.auth import issue_token

        token = issue_token(SECRET, info["sample_user"])
        me = await c.post(
            "/graphql",
            json={"query": "{ me { traits profile { events frequency } } }"},
            headers={"authorization": f"Bearer {token}"},
        )
        profile = me.json()["data"]["me"]
        assert profile["traits"]["country"]
        assert profile["traits"]["email"].startswith("hmac-sha256:")  # PII is stored hashed
        assert profile["profile"]["events"] > 0

"""Shared fixtures: the real ASGI app in-process over httpx, on a real SQLite file in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.security.auth import issue_token
from recommend.offline import movielens
from recommend.types import RecommendError

SECRET = "test-secret-0123456789abcdef0123456789"
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: Any
    clock: FakeClock
    data_dir: Path

    @property
    def services(self) -> Any:
        return self.app.state.services

    def token(self, user: str, *scopes: str, ttl: int = 3600) -> str:
        return issue_token(SECRET, user, scopes=scopes, ttl_s=ttl)

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        user: str | None = None,
        scopes: tuple[str, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = dict(headers or {})
        if user:
            h["authorization"] = f"Bearer {self.token(user, *scopes)}"
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        return await self.client.post("/graphql", json=body, headers=h)


def datasets_dir() -> Path:
    """Where tests read shared datasets: ``$TAILOR_DATASETS_DIR``, by default ``../shared/data``
    beside the checkout (the lookup of recommend.offline.movielens, which benchmarks use too;
    docs/DATA.md). Not the gateway's state directory ``TAILOR_DATA_DIR``."""
    return movielens.data_dir()


def movielens_dir() -> Path:
    """``ml-latest-small`` under :func:`datasets_dir`. Call it in the test body: a test that needs
    the dataset FAILS (never skips) when it is missing, with a message naming TAILOR_DATASETS_DIR."""
    try:
        return movielens.dataset_dir(datasets_dir())
    except RecommendError as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def gateway(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Gateway]:
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing", clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as client:
            yield Gateway(client, app, clock, tmp_path / "var")


def item_rows(n: int = 5) -> list[dict[str, Any]]:
    cats = ["Shoes", "Dresses", "Bags"]
    return [
        {
            "id": f"i{k}",
            "title": f"Item {k}",
            "description": f"A fine item number {k}",
            "categories": [cats[k % 3]],
            "tags": ["demo"],
            "price": 10.0 + k,
            "attributes": {"color": "red"},
        }
        for k in range(1, n + 1)
    ]

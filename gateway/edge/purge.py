"""Purging: ``POST /admin/purge`` (by tag, by key, or everything) and the CDN it forwards to."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.http import HTTPProblem
from resolvers.context import Viewer

#: ``purge(tags, keys, everything) -> summary``: the edge layer's purge.
Purge = Callable[[list[str], list[str], bool], Awaitable[dict[str, Any]]]

log = logging.getLogger("tailor.edge")


class CdnPurger:
    """Forwards purges to a CDN purge URL as ``POST {"tags": [...], "keys": [...]}``."""

    def __init__(self, url: str, *, token: str | None = None, client: httpx.AsyncClient) -> None:
        self.url = url
        self.token = token
        self.client = client

    async def purge(self, tags: list[str], keys: list[str]) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = await self.client.post(
                self.url, json={"tags": tags, "keys": keys}, headers=headers, timeout=10.0
            )
        except httpx.HTTPError as exc:
            log.warning("CDN purge failed: %r", exc)
            return {"forwarded": False, "error": str(exc) or type(exc).__name__}
        return {"forwarded": r.is_success, "status": r.status_code}


async def handle_purge(purge: Purge, request: Request, viewer: Viewer) -> Response:
    """``POST /admin/purge`` with ``{"tags": [...], "keys": [...], "all": false}``."""
    if "admin" not in viewer.scopes:
        raise HTTPProblem(403, "purging needs a token with the admin scope", "FORBIDDEN")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise HTTPProblem(415, "use Content-Type application/json", "UNSUPPORTED_MEDIA_TYPE")
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(400, f"the body is not valid JSON: {exc}", "BAD_REQUEST") from None
    if not isinstance(data, dict):
        raise HTTPProblem(400, 'the body must be {"tags": [...], "keys": [...]}', "BAD_REQUEST")
    tags, keys = _strings(data, "tags"), _strings(data, "keys")
    everything = data.get("all") is True
    if not (tags or keys or everything):
        raise HTTPProblem(400, "name `tags`, `keys` or `all: true`", "BAD_REQUEST")
    result = await purge(tags, keys, everything)
    return Response(
        orjson.dumps(result),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _strings(data: dict[str, Any], name: str) -> list[str]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise HTTPProblem(400, f"`{name}` must be a list of non-empty strings", "BAD_REQUEST")
    if len(value) > 1000:
        raise HTTPProblem(400, f"at most 1000 `{name}` per purge", "BAD_REQUEST")
    return list(dict.fromkeys(value))

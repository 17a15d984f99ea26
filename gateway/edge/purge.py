"""Purging: ``POST /admin/purge`` (by tag, by key, or everything) and the CDN it forwards to."""

from __future__ import annotations

import logging
import re
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

# A tag Surrogate-Key / Cache-Tag can carry: visible ASCII, no comma (Tailor's own tags are).
_HEADER_TAG = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,1024}")


class CdnPurger:
    """The generic adapter: ``POST {"tags": [...], "keys": [...]}`` to ``url`` (``Authorization:
    Bearer <token>`` when set); a purge of everything is ``{"tags": [], "keys": [], "all": true}``.

    Subclasses speak a CDN's own purge-by-tag API. ``purge`` never raises: the local purge has
    happened, and the CDN's outcome is reported (``forwarded``, ``status``, ``requests``)."""

    #: Tags per request (the API's batch limit); 0 = all in one request.
    batch_size = 0

    def __init__(self, url: str, *, token: str | None = None, client: httpx.AsyncClient) -> None:
        self.url = url
        self.token = token
        self.client = client

    def requests(self, tags: list[str], keys: list[str], everything: bool) -> list[httpx.Request]:
        """The API requests for one purge."""
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        body: dict[str, Any] = {"tags": tags, "keys": keys}
        if everything:
            body["all"] = True
        return [self.client.build_request("POST", self.url, json=body, headers=headers)]

    def batches(self, tags: list[str]) -> list[list[str]]:
        """``tags`` a CDN header can carry (visible ASCII, no comma), ``batch_size`` at a time."""
        tags = [t for t in tags if _HEADER_TAG.fullmatch(t)]
        size = self.batch_size or max(len(tags), 1)
        return [tags[i : i + size] for i in range(0, len(tags), size)]

    async def purge(
        self, tags: list[str], keys: list[str], everything: bool = False
    ) -> dict[str, Any]:
        requests = self.requests(tags, keys, everything)
        if not requests:
            return {"forwarded": False, "error": "nothing this CDN can purge", "requests": 0}
        status = 0
        for request in requests:
            try:
                r = await self.client.send(request)
            except httpx.HTTPError as exc:
                log.warning("CDN purge failed: %r", exc)
                return {"forwarded": False, "error": str(exc) or type(exc).__name__}
            status = r.status_code
            if not r.is_success:
                log.warning("CDN purge refused: %s %s", r.status_code, r.text[:200])
                return {"forwarded": False, "status": status, "requests": len(requests)}
        result: dict[str, Any] = {"forwarded": True, "status": status}
        if len(requests) > 1:
            result["requests"] = len(requests)
        return result


class CloudflarePurger(CdnPurger):
    """Cloudflare: ``POST {api}/zones/{zone}/purge_cache`` with ``{"tags": [...]}`` (at most 100
    per request) or ``{"purge_everything": true}``, ``Authorization: Bearer <API token>`` (a token
    with the Cache Purge permission). Tags match the ``Cache-Tag`` header Tailor sends; cache
    keys are Tailor's own and have no Cloudflare equivalent, so they are not forwarded."""

    API = "https://api.cloudflare.com/client/v4"
    batch_size = 100

    def __init__(
        self,
        zone_id: str,
        *,
        token: str | None,
        client: httpx.AsyncClient,
        api: str | None = None,
    ) -> None:
        super().__init__(
            f"{(api or self.API).rstrip('/')}/zones/{zone_id}/purge_cache",
            token=token,
            client=client,
        )

    def requests(self, tags: list[str], keys: list[str], everything: bool) -> list[httpx.Request]:
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        bodies: list[dict[str, Any]] = (
            [{"purge_everything": True}]
            if everything
            else [{"tags": b} for b in self.batches(tags)]
        )
        return [
            self.client.build_request("POST", self.url, json=body, headers=headers)
            for body in bodies
            if body.get("tags") != []
        ]


class FastlyPurger(CdnPurger):
    """Fastly: ``POST {api}/service/{id}/purge`` with the tags space-separated in a
    ``Surrogate-Key`` header (at most 256 per request), or ``POST {api}/service/{id}/purge_all``;
    ``Fastly-Key: <API token>``. ``soft``: mark stale (``Fastly-Soft-Purge: 1``) so
    stale-while-revalidate / stale-if-error still apply. Tags match the ``Surrogate-Key`` header
    Tailor sends; cache keys are not forwarded."""

    API = "https://api.fastly.com"
    batch_size = 256

    def __init__(
        self,
        service_id: str,
        *,
        token: str | None,
        client: httpx.AsyncClient,
        api: str | None = None,
        soft: bool = False,
    ) -> None:
        super().__init__(
            f"{(api or self.API).rstrip('/')}/service/{service_id}", token=token, client=client
        )
        self.soft = soft

    def requests(self, tags: list[str], keys: list[str], everything: bool) -> list[httpx.Request]:
        headers = {"fastly-key": self.token} if self.token else {}
        headers["accept"] = "application/json"
        if everything:
            return [self.client.build_request("POST", f"{self.url}/purge_all", headers=headers)]
        if self.soft:
            headers["fastly-soft-purge"] = "1"
        return [
            self.client.build_request(
                "POST", f"{self.url}/purge", headers={**headers, "surrogate-key": " ".join(batch)}
            )
            for batch in self.batches(tags)
        ]


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

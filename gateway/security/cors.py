"""Cross-origin requests from browser apps, with Starlette's ``CORSMiddleware``.

Who may call:

- the origins listed in ``cors_origins`` (``https://shop.example.com``); they alone get
  ``Access-Control-Allow-Credentials: true`` (cookies, when ``auth_cookie`` is used);
- ``*`` in that list: any origin, never with credentials (bearer tokens still work: the
  ``Authorization`` header is an allowed request header, not a credential in the CORS sense);
- in development (``production`` off) also the usual local dev servers — ``http(s)://localhost``,
  ``127.0.0.1`` and ``[::1]`` on any port (Vite, webpack, Next) — without credentials;
- in production nobody else: with ``cors_origins`` empty no cross-origin call is allowed.

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered here, before any
guard, with ``Access-Control-Max-Age`` so browsers cache them; a preflight from an origin not
allowed gets 400. Responses carry ``Vary: Origin`` whenever the answer depends on the origin, so a
shared cache never serves one origin's CORS headers to another.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.edge.segment_tokens import HEADER as SEGMENT_HEADER

#: Local dev servers on any port: localhost, 127.0.0.1, [::1] (http or https).
DEV_ORIGIN_REGEX = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?"

#: Request headers the clients send: auth, JSON bodies, the segment token, the anonymous id,
#: Apollo Client / Apollo iOS / Apollo Kotlin headers, the CSRF / preflight-forcing headers,
#: the personalization opt-out and conditional requests.
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Accept",
    SEGMENT_HEADER,
    "X-Anonymous-Id",
    "X-API-Key",
    "X-Tailor-CSRF",
    "X-Tailor-Personalization",
    "apollographql-client-name",
    "apollographql-client-version",
    "Apollo-Require-Preflight",
    "X-Apollo-Operation-Name",
    "X-Apollo-Operation-Id",
    "X-Tailor-Channel",
    "X-Request-ID",
    "If-None-Match",
)

#: Response headers a page's script may read (beyond the CORS-safelisted ones).
EXPOSED_HEADERS = (SEGMENT_HEADER, "ETag", "X-Cache", "Age", "Retry-After", "X-Request-ID")

METHODS = ("GET", "HEAD", "POST", "OPTIONS")


class CorsError(ValueError):
    """An entry of ``cors_origins`` is not an origin (``scheme://host[:port]``) or ``*``."""


def check_origin(origin: str) -> str:
    """``origin`` if it is ``*`` or a serialized origin (no path, query or trailing slash)."""
    if origin == "*":
        return origin
    parts = urlsplit(origin)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
        or origin != origin.strip()
    ):
        raise CorsError(
            f"{origin!r} is not an origin: write scheme://host[:port], e.g. "
            "https://shop.example.com (no path, no trailing slash), or *"
        )
    return origin


class CorsPolicy:
    """A pure-ASGI middleware: listed origins (with credentials) and the rest (without) each go
    through their own Starlette ``CORSMiddleware`` around the same app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        origins: Sequence[str] = (),
        dev_servers: bool = False,
        max_age: int = 7200,
    ) -> None:
        self.app = app
        listed = [check_origin(o) for o in origins]
        self.any_origin = "*" in listed
        self.listed = frozenset(o for o in listed if o != "*")
        cors = functools.partial(
            CORSMiddleware,
            app,
            allow_methods=METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=max_age,
        )
        self.credentialed = (
            cors(allow_origins=sorted(self.listed), allow_credentials=True) if self.listed else None
        )
        self.anonymous: ASGIApp | None = None
        if self.any_origin:
            self.anonymous = cors(allow_origins=["*"])
        elif dev_servers:
            self.anonymous = cors(allow_origin_regex=DEV_ORIGIN_REGEX)

    @property
    def enabled(self) -> bool:
        return self.credentialed is not None or self.anonymous is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        origin = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
                break
        handler: ASGIApp = self.app
        if origin is not None:
            # An origin allowed by neither still goes through one of them: its preflight gets
            # Starlette's 400 and its answers no Access-Control-Allow-Origin.
            if origin in self.listed or self.anonymous is None:
                handler = self.credentialed or self.app
            else:
                handler = self.anonymous
        if self.any_origin:
            # Same headers for every origin: nothing to vary on.
            await handler(scope, receive, send)
            return
        await handler(scope, receive, _vary_origin(send))


def _vary_origin(send: Send) -> Send:
    """Add ``Origin`` to ``Vary`` on every response (allowed origin, other origin, none)."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            vary = headers.get("vary", "")
            if "origin" not in (v.strip().lower() for v in vary.split(",")):
                headers["vary"] = f"{vary}, Origin" if vary else "Origin"
        await send(message)

    return wrapped

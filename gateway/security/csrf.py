"""Cookie credentials with CSRF protection, and browser privacy signals (``Sec-GPC``/``DNT``).

Bearer tokens are immune to CSRF (a browser never attaches them on its own); cookies are not.
When ``auth_cookie`` is configured, a request that carries that cookie must not be a "simple"
cross-site request, i.e. one a page on another origin can send without a CORS preflight:

- POST with no ``Content-Type`` or with ``text/plain``, ``application/x-www-form-urlencoded``
  or ``multipart/form-data``;
- GET/HEAD without a preflight-forcing header (``X-Tailor-CSRF``, ``Apollo-Require-Preflight``
  or ``X-Apollo-Operation-Name``; any value).

Those answer 403 ``CSRF_REJECTED`` before anything runs. Otherwise the cookie's token becomes the
request's ``Authorization: Bearer`` (unless one is already present), so the one JWT path in
``gateway/security/auth.py`` verifies it. GET never runs mutations (the GraphQL endpoint answers 405).
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.security.guard import send_problem
from profiles.privacy import request_opt_out

SIMPLE_TYPES = frozenset(
    {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
PREFLIGHT_HEADERS = frozenset(
    {b"x-tailor-csrf", b"apollo-require-preflight", b"x-apollo-operation-name"}
)


def is_simple_request(method: str, headers: dict[bytes, bytes]) -> bool:
    if method in ("GET", "HEAD"):
        return not any(h in headers for h in PREFLIGHT_HEADERS)
    ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
    return ctype in SIMPLE_TYPES


class CookieAuthMiddleware:
    """Accept a JWT from ``cookie_name``; refuse simple (CSRF-able) requests that carry it."""

    def __init__(self, app: ASGIApp, *, cookie_name: str) -> None:
        self.app = app
        self.cookie_name = cookie_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        token = self._cookie_token(headers.get(b"cookie"))
        if token is None:
            await self.app(scope, receive, send)
            return
        if is_simple_request(scope["method"], headers):
            await send_problem(
                send,
                403,
                "cross-site request refused: send Content-Type "
                "application/json, or an X-Tailor-CSRF header on GET",
                "CSRF_REJECTED",
            )
            return
        if b"authorization" not in headers:
            raw = [*scope["headers"], (b"authorization", b"Bearer " + token.encode())]
            scope = {**scope, "headers": raw}
        await self.app(scope, receive, send)

    def _cookie_token(self, raw: bytes | None) -> str | None:
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None and morsel.value else None


class PrivacySignalMiddleware:
    """``Sec-GPC: 1`` or ``DNT: 1`` opts the request out of tracking (events are dropped)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name in (b"sec-gpc", b"dnt") and value.strip() == b"1":
                    with request_opt_out():
                        await self.app(scope, receive, send)
                    return
        await self.app(scope, receive, send)

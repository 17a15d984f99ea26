"""Behind proxies, the address in the logs and the rate-limit key name the same client: uvicorn's
proxy-header middleware (what `tailor serve` turns on with ``trust_forwarded_for``, with
``trusted_proxies`` as its allow-list; it rewrites the address uvicorn logs) and the guard's
``ClientKey`` both take the right-most ``X-Forwarded-For`` hop that is not a trusted proxy,
never the left-most one a client writes."""

from __future__ import annotations

from typing import Any

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from gateway.security.guard import ClientKey
from tests.conftest import SECRET

CASES = [
    # (trusted proxies, connecting peer, X-Forwarded-For, the client)
    (("10.0.0.0/8",), "10.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"),
    (("10.0.0.0/8",), "10.0.0.1", "6.6.6.6, 203.0.113.7, 10.2.3.4", "203.0.113.7"),
    (
        ("10.0.0.0/8", "192.0.2.0/24"),
        "10.0.0.1",
        "1.1.1.1, 198.51.100.9, 192.0.2.5",
        "198.51.100.9",
    ),
    (("10.0.0.0/8",), "198.51.100.1", "6.6.6.6", "198.51.100.1"),  # not from a proxy: ignored
    (("127.0.0.1", "::1"), "127.0.0.1", "2001:db8::5, ::1", "2001:db8::5"),
    (("10.0.0.0/8",), "10.0.0.1", "10.0.0.9, 10.0.0.8", "10.0.0.9"),  # all trusted: left-most
]


async def logged_client(trusted: tuple[str, ...], peer: str, xff: str) -> str:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["client"] = scope["client"]

    middleware = ProxyHeadersMiddleware(app, trusted_hosts=list(trusted))  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "client": (peer, 4000),
        "headers": [(b"x-forwarded-for", xff.encode())],
    }
    await middleware(scope, None, None)  # type: ignore[arg-type]
    return str(seen["client"][0])


@pytest.mark.parametrize(("trusted", "peer", "xff", "client"), CASES)
async def test_logs_and_rate_limits_agree_on_the_client(
    trusted: tuple[str, ...], peer: str, xff: str, client: str
) -> None:
    key = ClientKey(SECRET, None, None, trust_forwarded_for=True, trusted_proxies=trusted)
    scope = {"headers": [(b"x-forwarded-for", xff.encode())], "client": (peer, 4000)}
    assert key(scope) == f"ip:{client}"
    assert await logged_client(trusted, peer, xff) == client

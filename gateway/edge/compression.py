"""Response compression (zstd, brotli, gzip) that keeps ETag/304 right.

Compression is ``starlette-compress``'s ``CompressMiddleware``: the client's ``Accept-Encoding``
picks zstd, then brotli, then gzip; bodies below ``minimum_size`` bytes go out as they are, and a
compressed answer carries ``Content-Encoding`` and ``Vary: Accept-Encoding``.

ETags: the edge layer gives every cacheable answer a strong ETag computed over the identity
body. A compressed body is a different byte sequence, so it must not carry that strong tag
(RFC 9110 §8.8.1; a cache could otherwise splice ranges of two representations). As nginx does,
a compressed answer's ETag is made weak (``W/"…"``): revalidation uses the weak comparison
(§13.1.2), so ``If-None-Match: W/"…"`` still gets a 304, and that 304 carries the weak tag the
client holds (and ``Vary: Accept-Encoding``), so its stored headers stay the compressed
representation's.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette_compress import CompressMiddleware

#: Content-Encoding values this middleware produces.
ENCODINGS = frozenset({"gzip", "br", "zstd"})


def _add_vary(headers: MutableHeaders, name: str) -> None:
    vary = headers.get("vary", "")
    if name.lower() not in (v.strip().lower() for v in vary.split(",")):
        headers["vary"] = f"{vary}, {name}" if vary else name


class Compression:
    """Pure-ASGI middleware: ``CompressMiddleware`` around ``app`` plus the ETag rules above."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = 1024) -> None:
        self.app = app
        self.compress = CompressMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if_none_match = b""
        for name, value in scope["headers"]:
            if name == b"if-none-match":
                if_none_match = value
                break

        async def etag_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                _fix_etag(message, if_none_match)
            await send(message)

        await self.compress(scope, receive, etag_send)


def _fix_etag(message: Message, if_none_match: bytes) -> None:
    raw = message.get("headers") or []
    etag = encoding = None
    for name, value in raw:
        lower = name.lower()
        if lower == b"etag":
            etag = value.decode("latin-1")
        elif lower == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
    if etag is None or etag.startswith("W/"):
        return
    headers = MutableHeaders(scope=message)
    if encoding in ENCODINGS:
        headers["etag"] = f"W/{etag}"
    elif message["status"] == 304 and if_none_match:
        # Revalidating a compressed copy: answer with the tag the client holds.
        held = {c.strip() for c in if_none_match.decode("latin-1").split(",")}
        if f"W/{etag}" in held and etag not in held:
            headers["etag"] = f"W/{etag}"
            _add_vary(headers, "Accept-Encoding")

"""API keys for server-to-server callers (edge workers, back-ends): scoped, hashed at rest.

A key reads ``tk_<id>_<secret>``: ``id`` (16 hex) is the public lookup handle, ``secret`` is 32
random bytes (base64url). Only SHA-256 of the secret is stored. A slow password hash (argon2,
bcrypt) buys nothing here: the secret has 256 bits of entropy, so there is nothing to brute-force,
and a fast hash keeps verification off the request budget.

Callers send ``X-Api-Key: tk_...`` or ``Authorization: ApiKey tk_...``. :class:`ApiKeyMiddleware`
verifies the key and exchanges it for a short-lived internal bearer token (``sub`` =
``apikey:<id>``, the key's scopes), so every route authenticates through the one JWT path in
``gateway/security/auth.py``; minted tokens are cached for a fraction of their lifetime.

Scopes (checked per operation, ``resolvers.context.Viewer``): ``admin`` may call everything
(erasure of any user, purges); ``service`` reads and writes anyone's data (events, identify,
consent); ``read`` only reads: every mutation and ``POST /v1/events`` answer FORBIDDEN.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cachetools import TTLCache
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.security.auth import issue_token
from gateway.security.guard import send_problem
from storage.privacy import (
    ApiKeyRow,
    get_api_key,
    insert_api_key,
    list_api_keys,
    revoke_api_key,
)
from storage.types import Store

PREFIX = "tk_"
SCOPES = ("admin", "service", "read")
_MINTED_TTL_S = 300


class ApiKeyError(ValueError):
    """An API key that is malformed, unknown or revoked (answered 401), or a bad scope."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None

    @property
    def subject(self) -> str:
        return f"apikey:{self.id}"

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, row.scopes, row.created_at, row.revoked_at)


class ApiKeyRegistry:
    """Create, revoke, list and verify API keys stored in the store."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def create(self, name: str, scopes: Iterable[str] = ()) -> tuple[ApiKey, str]:
        """A new key and its plaintext (shown once; it cannot be recovered later)."""
        wanted = tuple(sorted(set(scopes)))
        unknown = set(wanted) - set(SCOPES)
        if unknown:
            raise ApiKeyError(f"unknown scopes {sorted(unknown)}; use {', '.join(SCOPES)}")
        if not name.strip():
            raise ApiKeyError("an API key needs a name")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = ApiKeyRow(key_id, name.strip(), wanted, _hash(secret), self.clock())
        insert_api_key(self.store, row)
        return _public(row), f"{PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        return revoke_api_key(self.store, key_id, self.clock())

    def list(self) -> list[ApiKey]:
        return [_public(r) for r in list_api_keys(self.store)]

    def verify(self, presented: str) -> ApiKey:
        """The active key for ``presented``; raises :class:`ApiKeyError` otherwise."""
        if not presented.startswith(PREFIX):
            raise ApiKeyError("malformed API key")
        key_id, sep, secret = presented[len(PREFIX) :].partition("_")
        if not sep or len(key_id) != 16 or not secret:
            raise ApiKeyError("malformed API key")
        row = get_api_key(self.store, key_id)
        # Compare against a dummy hash when the id is unknown, so timing does not reveal ids.
        expected = row.secret_hash if row is not None else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None:
            raise ApiKeyError("unknown API key")
        if row.revoked_at is not None:
            raise ApiKeyError("API key has been revoked")
        return _public(row)


class ApiKeyMiddleware:
    """Exchange a valid API key for an internal bearer token; 401 for an invalid one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: Callable[[], ApiKeyRegistry | None],
        secret: str,
        issuer: str | None,
        audience: str | None,
    ) -> None:
        self.app = app
        self.registry = registry  # resolved per request: the store opens in the lifespan
        self.jwt = (secret, issuer, audience)
        self._minted: TTLCache[str, str] = TTLCache(maxsize=10_000, ttl=_MINTED_TTL_S / 5)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = None
        headers = list(scope["headers"])
        for name, value in headers:
            if name == b"x-api-key":
                presented = value.decode("latin-1").strip()
            elif name == b"authorization" and value[:7].lower() == b"apikey ":
                presented = value[7:].decode("latin-1").strip()
        if presented is None:
            await self.app(scope, receive, send)
            return
        registry = self.registry()
        try:
            if registry is None:
                raise ApiKeyError("API keys are not available yet")
            key = registry.verify(presented)
        except ApiKeyError as exc:
            await send_problem(send, 401, str(exc), "INVALID_API_KEY")
            return
        token = self._minted.get(presented)
        if token is None:
            secret, issuer, audience = self.jwt
            token = issue_token(
                secret,
                key.subject,
                scopes=key.scopes,
                ttl_s=_MINTED_TTL_S,
                issuer=issuer,
                audience=audience,
            )
            self._minted[presented] = token
        headers = [(n, v) for n, v in headers if n not in (b"authorization", b"x-api-key")]
        headers.append((b"authorization", b"Bearer " + token.encode()))
        await self.app({**scope, "headers": headers}, receive, send)

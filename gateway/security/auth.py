"""Bearer-token authentication: HS256 JWTs with the algorithm pinned.

A token must carry ``sub`` (the user id) and ``exp``; ``iss``/``aud`` are checked when configured.
``scope`` may be a space-separated string or a list (``"admin"``, ``"service"``). The algorithm
is pinned to HS256, so ``alg: none`` and algorithm-confusion tokens are refused.
Requests without ``Authorization`` are anonymous, optionally identified by ``X-Anonymous-Id``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt

from resolvers.context import Viewer
from storage.fields import FieldError, ident

ALGORITHM = "HS256"


class AuthError(Exception):
    """The request carried credentials that are not valid (answered 401)."""


def issue_token(
    secret: str,
    user_id: str,
    *,
    scopes: Iterable[str] = (),
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    now: float | None = None,
) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": user_id, "iat": issued, "exp": issued + ttl_s}
    scope = " ".join(sorted(set(scopes)))
    if scope:
        claims["scope"] = scope
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def viewer_from_headers(
    authorization: str | None,
    anonymous_id: str | None,
    *,
    secret: str,
    issuer: str | None = None,
    audience: str | None = None,
) -> Viewer:
    anon = None
    if anonymous_id:
        try:
            anon = ident({"X-Anonymous-Id": anonymous_id}, "X-Anonymous-Id")
        except FieldError as exc:
            raise AuthError(f"X-Anonymous-Id {exc.reason}") from None
    if not authorization:
        return Viewer(anonymous_id=anon)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization must be 'Bearer <token>'")
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=[ALGORITHM],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "sub"], "verify_aud": audience is not None},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token has expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token: sub must be a non-empty string")
    raw_scope = claims.get("scope", claims.get("scopes", ""))
    scopes = raw_scope.split() if isinstance(raw_scope, str) else [str(s) for s in raw_scope or []]
    return Viewer(user_id=sub, anonymous_id=anon, scopes=frozenset(scopes))

"""Bearer-token authentication: HS256 JWTs (the gateway's secret) and, with a JWKS URL, the
RS256/ES256 tokens of an identity provider.

A token must carry ``sub`` (the user id) and ``exp``; ``iss``/``aud`` are checked when configured.
``scope`` may be a space-separated string or a list of strings (``"admin"``, ``"service"``). The
key follows from the token's ``alg``: HS256 is verified with the secret only; an algorithm of the
JWKS allow-list (``jwt_algorithms``) with the provider's key named by ``kid`` only (see
``gateway/security/jwks.py``); anything else — ``none``, HS384, an algorithm not listed — is
refused before any key is looked at, so algorithm-confusion tokens cannot verify.
Requests without ``Authorization`` are anonymous, optionally identified by ``X-Anonymous-Id``.

Claims are validated, never trusted for their shape: ``sub`` must be a valid id
(``storage.fields.ident``, and not in the ``anon:`` namespace of anonymous profiles), ``scope`` a
string or a list of strings, and the token's lifetime (``exp - iat``, or ``exp - now`` without
``iat``) at most ``max_ttl_s``. A token issued at or before the erasure of its user (``iat`` not
after the erasure time, or no ``iat``) is refused: erasure signs the person out everywhere.
Every refusal is an :class:`AuthError` (answered 401 with its message).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.security.jwks import JwksKeys, KeySetError, KeySetUnavailable
from resolvers.context import Viewer
from storage.fields import FieldError, ident
from storage.types import ANONYMOUS_PREFIX

ALGORITHM = "HS256"
# The longest token lifetime accepted unless configured otherwise (``max_token_ttl_s``).
DEFAULT_MAX_TOKEN_TTL_S = 30 * 86_400

ErasedAt = Callable[[str], float | None]


class AuthError(Exception):
    """The request carried credentials that are not valid (answered 401)."""


class AuthUnavailable(AuthError):
    """The credentials cannot be checked now: the identity provider's keys are unreachable
    (answered 503, not 401: the token may be valid)."""


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


# Clock skew tolerated between the token issuer and this gateway (exp, iat, nbf).
CLOCK_SKEW_S = 5.0


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of a verified token, validated for shape."""

    subject: str
    scopes: frozenset[str]
    expires_at: float
    issued_at: float | None = None


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """``scope`` (or ``scopes``): a space-separated string or a list of strings."""
    raw = claims.get("scope", claims.get("scopes"))
    if raw is None:
        return frozenset()
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list | tuple) and all(isinstance(s, str) for s in raw):
        return frozenset(p for s in raw for p in s.split())
    raise AuthError(
        "invalid token: scope must be a space-separated string or a list of strings, "
        f"got {type(raw).__name__}"
    )


def token_subject(claims: Mapping[str, Any]) -> str:
    """``sub``: a valid user id (letters, digits, ``. _ : @ | -``), not an anonymous profile key."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token: sub must be a non-empty string")
    try:
        ident({"sub": sub}, "sub")
    except FieldError as exc:
        raise AuthError(f"invalid token: sub {exc.reason}") from None
    if sub[-1] == "\n":  # the id pattern's ``$`` lets one trailing newline through
        raise AuthError("invalid token: sub must not end with a newline")
    if sub.startswith(ANONYMOUS_PREFIX):
        raise AuthError(
            f"invalid token: sub must not start with {ANONYMOUS_PREFIX!r} "
            "(reserved for anonymous profiles)"
        )
    return sub


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond the float range
        return False


def read_token(
    token: str,
    *,
    secret: str,
    issuer: str | None = None,
    audience: str | None = None,
    max_ttl_s: float | None = DEFAULT_MAX_TOKEN_TTL_S,
    now: float | None = None,
    keys: JwksKeys | None = None,
) -> TokenClaims:
    """Verify ``token`` (signature, expiry, issuer, audience) and validate its claims.

    ``max_ttl_s``: the longest lifetime accepted (None or 0: no limit). ``keys``: the identity
    provider's key set, for its algorithms. Raises :class:`AuthError`.
    """
    key, algorithm = _verification_key(token, secret, keys)
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            options={"require": ["exp", "sub"], "verify_aud": audience is not None},
            leeway=CLOCK_SKEW_S,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token has expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.InvalidAudienceError:
        raise AuthError(f"invalid token: its audience (aud) is not {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise AuthError(f"invalid token: its issuer (iss) is not {issuer!r}") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:  # claims PyJWT does not type-check
        raise AuthError(f"invalid token: {exc}") from None
    sub = token_subject(claims)
    scopes = token_scopes(claims)
    exp, iat = claims["exp"], claims.get("iat")
    # JSON numbers only (RFC 7519 NumericDate): PyJWT lets "123" and true through.
    if not _finite_number(exp) or (iat is not None and not _finite_number(iat)):
        raise AuthError("invalid token: exp and iat must be numbers of seconds")
    expires_at = float(exp)
    issued_at = None if iat is None else float(iat)
    if max_ttl_s:
        start = issued_at if issued_at is not None else (time.time() if now is None else now)
        lifetime = expires_at - start
        if lifetime > max_ttl_s:
            what = "exp - iat" if issued_at is not None else "exp - now"
            raise AuthError(
                f"invalid token: its lifetime ({what}) of {lifetime:.0f}s exceeds the maximum "
                f"of {max_ttl_s:.0f}s; issue a shorter-lived token"
            )
    return TokenClaims(sub, scopes, expires_at, issued_at)


def _verification_key(token: str, secret: str, keys: JwksKeys | None) -> tuple[Any, str]:
    """``(key, algorithm)`` for ``token`` by its header's ``alg``: the secret for HS256, the
    provider's ``kid`` key for an allowed JWKS algorithm; any other ``alg`` is refused here."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    alg = header.get("alg")
    if alg == ALGORITHM:
        return secret, ALGORITHM
    if keys is not None and alg in keys.algorithms:
        try:
            return keys.key_for(header.get("kid")), alg
        except KeySetUnavailable as exc:
            raise AuthUnavailable(str(exc)) from None
        except KeySetError as exc:
            raise AuthError(str(exc)) from None
    accepted = [ALGORITHM, *sorted(keys.algorithms if keys is not None else ())]
    hint = "" if keys is not None else " (RS256/ES256 tokens need TAILOR_JWKS_URL)"
    raise AuthError(
        f"invalid token: algorithm {alg!r} is not accepted; accepted: {', '.join(accepted)}{hint}"
    )


def viewer_from_headers(
    authorization: str | None,
    anonymous_id: str | None,
    *,
    secret: str,
    issuer: str | None = None,
    audience: str | None = None,
    max_ttl_s: float | None = DEFAULT_MAX_TOKEN_TTL_S,
    erased_at: ErasedAt | None = None,
    keys: JwksKeys | None = None,
) -> Viewer:
    """The caller; ``erased_at(user_id)`` is the time of the user's latest erasure (or None);
    ``keys``: the identity provider's key set (``jwks_url``)."""
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
    claims = read_token(
        token.strip(),
        secret=secret,
        issuer=issuer,
        audience=audience,
        max_ttl_s=max_ttl_s,
        keys=keys,
    )
    if erased_at is not None:
        erased = erased_at(claims.subject)
        if erased is not None and (claims.issued_at is None or claims.issued_at <= erased):
            raise AuthError(
                "token was issued before this user's data was erased; sign in again for a new token"
            )
    return Viewer(user_id=claims.subject, anonymous_id=anon, scopes=claims.scopes)

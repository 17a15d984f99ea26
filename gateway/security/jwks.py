"""Signing keys of an identity provider (Auth0, Cognito, Firebase, Keycloak…) from its JWKS URL.

PyJWT's ``PyJWKClient`` fetches the key set, caches it for ``cache_s`` seconds and, when a token
names a key id (``kid``) it does not know — the provider rotated its keys — fetches the set again,
at most once per ``cooldown_s`` so a flood of made-up ``kid`` values cannot hammer the provider.
The fetch is a blocking HTTP call; the app runs :meth:`JwksKeys.keep_fresh` in the background
(a thread refetches every ``cache_s / 2``), so requests find the set cached and only a rotation
(an unknown ``kid``) fetches on the request path.

Only the asymmetric algorithms of the allow-list are verified with these keys, and each key only
for its own algorithm (PyJWT checks the token's ``alg`` against the key's); HS256 is verified with
the gateway's own secret alone, so no public key is ever used as an HMAC secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import jwt
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWKClientError

log = logging.getLogger("tailor.auth")

#: Algorithms a JWKS key may verify (HS* never: those use the gateway's secret).
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class KeySetError(Exception):
    """The token cannot be checked: its key is not in the key set (answered 401)."""


class KeySetUnavailable(KeySetError):
    """The key set could not be fetched (answered 503: the token may well be valid)."""


class JwksKeys:
    """The signing keys at ``url``; ``algorithms`` is the allow-list of token ``alg`` values."""

    def __init__(
        self,
        url: str,
        *,
        algorithms: Iterable[str] = ("RS256", "ES256"),
        cache_s: float = 300.0,
        cooldown_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.algorithms = frozenset(algorithms)
        unknown = self.algorithms - ASYMMETRIC
        if unknown:
            raise ValueError(
                f"not JWKS algorithms: {sorted(unknown)} (allowed: {sorted(ASYMMETRIC)})"
            )
        self.cache_s = cache_s
        self.client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_s,
            cooldown_duration=cooldown_s,
            timeout=timeout_s,
        )

    async def keep_fresh(self) -> None:
        """Refetch the key set off the event loop every ``cache_s / 2`` (until cancelled); a
        failure is logged and the cached set keeps serving until it expires."""
        while True:
            try:
                await asyncio.to_thread(self.client.get_jwk_set, True)
            except Exception as exc:  # the provider is down: requests report it (503)
                log.warning("could not refresh the JWKS at %s: %r", self.url, exc)
            await asyncio.sleep(self.cache_s / 2)

    def key_for(self, kid: object) -> PyJWK:
        """The key with id ``kid`` (the key set is fetched again once if it is unknown)."""
        if not isinstance(kid, str) or not kid:
            raise KeySetError("invalid token: a token signed with a JWKS key must name it (kid)")
        try:
            self.client.get_jwk_set()  # cached: fetched once per cache_s
        except PyJWKClientConnectionError as exc:
            raise KeySetUnavailable(
                f"the identity provider's keys are unavailable: {exc}"
            ) from None
        except (PyJWKClientError, jwt.PyJWKSetError, jwt.InvalidKeyError) as exc:
            raise KeySetUnavailable(f"the identity provider's key set is unusable: {exc}") from None
        try:
            return self.client.get_signing_key(kid)
        except PyJWKClientConnectionError as exc:
            raise KeySetUnavailable(
                f"the identity provider's keys are unavailable: {exc}"
            ) from None
        except (PyJWKClientError, jwt.PyJWKSetError, jwt.InvalidKeyError):
            raise KeySetError(
                f"invalid token: no key {kid!r} in the identity provider's key set"
            ) from None

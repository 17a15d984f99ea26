"""Tokens of a real identity provider: RS256/ES256 JWTs checked against keys served by a real
local JWKS HTTP endpoint (key rotation, caching), audience/issuer checks and the algorithm
allow-list, through the ASGI app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.app import create_app
from gateway.security.auth import issue_token
from gateway.settings import SettingsError
from tests.conftest import SECRET

ISSUER = "https://tenant.idp.example/"
AUDIENCE = "https://api.shop.example"
ME = "{ me { id anonymous } }"


@dataclass
class Jwks:
    """A JWKS endpoint on 127.0.0.1: ``keys`` is what it serves; ``hits`` counts fetches."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    fail: bool = False


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    state = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if state.fail:
                self.send_response(500)
                self.end_headers()
                return
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Signer:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algo = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk = json.loads(algo.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def token(self, sub: str = "auth0|u1", **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": sub, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]


@asynccontextmanager
async def gateway(tmp_path: Path, jwks: Jwks, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app on ``jwks``'s key set, once its background refresh has fetched the set."""
    values: dict[str, Any] = {
        "jwks_url": jwks.url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_refresh_cooldown_s": 0.0,
        "rate_limit_per_s": 0,
    }
    values.update(settings)
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing", **values)
    hits = jwks.hits
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if jwks.hits > hits or jwks.fail:
                break
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor.test") as c:
            yield c


async def me(c: httpx.AsyncClient, token: str) -> httpx.Response:
    return await c.post(
        "/graphql", json={"query": ME}, headers={"authorization": f"Bearer {token}"}
    )


async def test_rs256_and_es256_tokens_from_the_jwks_are_accepted(
    tmp_path: Path, jwks: Jwks, rsa_keys: list[Any]
) -> None:
    rs = Signer("rsa-1", "RS256", rsa_keys[0])
    es = Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    jwks.keys = [rs.public_jwk(), es.public_jwk()]
    async with gateway(tmp_path, jwks) as c:
        for signer in (rs, es):
            r = await me(c, signer.token())
            assert r.status_code == 200, r.text
            assert r.json()["data"]["me"] == {"id": "auth0|u1", "anonymous": False}
        # Cached: more tokens, no more fetches of the key set.
        fetched = jwks.hits
        for _ in range(3):
            assert (await me(c, rs.token())).status_code == 200
        assert jwks.hits == fetched
        # HS256 tokens signed with the gateway's own secret still work (API keys, `tailor token`).
        own = issue_token(SECRET, "u2", issuer=ISSUER, audience=AUDIENCE)
        r = await me(c, own)
        assert r.json()["data"]["me"]["id"] == "u2"


async def test_rotated_keys_work(tmp_path: Path, jwks: Jwks, rsa_keys: list[Any]) -> None:
    old, new = Signer("2026-01", "RS256", rsa_keys[0]), Signer("2026-02", "RS256", rsa_keys[1])
    jwks.keys = [old.public_jwk()]
    async with gateway(tmp_path, jwks) as c:
        assert (await me(c, old.token())).status_code == 200
        fetched = jwks.hits
        # The provider rotates: the new key is published, the old one withdrawn.
        jwks.keys = [new.public_jwk()]
        r = await me(c, new.token(sub="u-new"))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["me"]["id"] == "u-new"
        assert jwks.hits == fetched + 1  # the unknown kid fetched the set again, once
        # A token of a key the provider never published is refused, with the kid named.
        stranger = Signer("not-published", "RS256", rsa_keys[2])
        r = await me(c, stranger.token())
        assert r.status_code == 401
        assert "no key 'not-published'" in r.json()["errors"][0]["message"]


async def test_unknown_kids_cannot_hammer_the_provider_and_the_set_stays_fresh(
    tmp_path: Path, jwks: Jwks, rsa_keys: list[Any]
) -> None:
    signer = Signer("k1", "RS256", rsa_keys[0])
    jwks.keys = [signer.public_jwk()]
    async with gateway(tmp_path, jwks, jwks_refresh_cooldown_s=60.0) as c:
        assert (await me(c, signer.token())).status_code == 200
        fetched = jwks.hits
        for n in range(5):
            forged = Signer(f"made-up-{n}", "RS256", rsa_keys[2])
            assert (await me(c, forged.token())).status_code == 401
        assert jwks.hits <= fetched + 1  # one refresh at most within the cooldown
    # The set is refetched in the background (every cache_s / 2), not on the request path.
    jwks.hits = 0
    async with gateway(tmp_path, jwks, jwks_cache_s=0.2) as c:
        await asyncio.sleep(0.5)
        assert jwks.hits >= 3
        assert (await me(c, signer.token())).status_code == 200


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": "https://other-api.example"}, "audience (aud) is not 'https://api.shop.example'"),
        ({"iss": "https://evil.example/"}, "issuer (iss) is not 'https://tenant.idp.example/'"),
        ({"aud": None}, "aud"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "token has expired"),
    ],
)
async def test_wrong_audience_issuer_or_expiry_are_refused(
    tmp_path: Path, jwks: Jwks, rsa_keys: list[Any], claims: dict[str, Any], message: str
) -> None:
    signer = Signer("k1", "RS256", rsa_keys[0])
    jwks.keys = [signer.public_jwk()]
    async with gateway(tmp_path, jwks) as c:
        r = await me(c, signer.token(**claims))
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert message in r.json()["errors"][0]["message"]


async def test_algorithms_outside_the_allow_list_are_refused(
    tmp_path: Path, jwks: Jwks, rsa_keys: list[Any]
) -> None:
    rs = Signer("k1", "RS256", rsa_keys[0])
    ps = Signer("k2", "PS256", rsa_keys[1])
    jwks.keys = [rs.public_jwk(), ps.public_jwk()]
    async with gateway(tmp_path, jwks, jwt_algorithms=("RS256",)) as c:
        r = await me(c, ps.token())  # a published key, but PS256 is not allowed
        assert r.status_code == 401
        assert "algorithm 'PS256' is not accepted; accepted: HS256, RS256" in r.text
        # RS512 with an RS256-published key: not in the list either.
        r = await me(c, Signer("k1", "RS512", rsa_keys[0]).token())
        assert r.status_code == 401 and "'RS512' is not accepted" in r.text
        # Algorithm confusion: HS256 signed with the RSA public key as the secret.
        public_pem = (
            rsa_keys[0]
            .public_key()
            .public_bytes(
                encoding=serialization.Encoding.PEM,
                format=serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )
        confused = _hs256_with_raw_key(public_pem, {"sub": "admin", "iss": ISSUER, "aud": AUDIENCE})
        r = await me(c, confused)
        assert r.status_code == 401 and "signature is invalid" in r.text
        # alg none.
        unsigned = jwt.encode(
            {"sub": "x", "exp": int(time.time()) + 60, "iss": ISSUER, "aud": AUDIENCE},
            None,
            algorithm="none",
        )
        r = await me(c, unsigned)
        assert r.status_code == 401 and "'none' is not accepted" in r.text


async def test_without_a_jwks_url_rs256_is_refused_clearly(
    tmp_path: Path, rsa_keys: list[Any]
) -> None:
    app = create_app(data_dir=tmp_path / "var", jwt_secret=SECRET, encoder="hashing")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await me(c, Signer("k1", "RS256", rsa_keys[0]).token())
            assert r.status_code == 401
            assert "TAILOR_JWKS_URL" in r.text


async def test_an_unreachable_provider_is_503_not_401(
    tmp_path: Path, jwks: Jwks, rsa_keys: list[Any]
) -> None:
    jwks.fail = True
    async with gateway(tmp_path, jwks) as c:
        r = await me(c, Signer("k1", "RS256", rsa_keys[0]).token())
        assert r.status_code == 503
        assert "unavailable" in r.json()["errors"][0]["message"]


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="jwt_algorithms"):
        create_app(
            data_dir=tmp_path,
            jwt_secret=SECRET,
            jwks_url="https://x/jwks",
            jwt_algorithms=("HS512",),
        )
    with pytest.raises(SettingsError, match="jwks_url"):
        create_app(data_dir=tmp_path, jwt_secret=SECRET, jwks_url="file:///etc/passwd")


def _hs256_with_raw_key(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT refuses PEM keys as HMAC secrets)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    claims = {**claims, "exp": int(time.time()) + 60}
    signing = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + b"."
        + b64(json.dumps(claims).encode())
    )
    return (signing + b"." + b64(hmac.new(key, signing, hashlib.sha256).digest())).decode()

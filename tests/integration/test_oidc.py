"""Single sign-on: JWTs signed by a key pair the test makes, served as a JWKS by the test's own
identity provider on loopback, accepted or refused by the API (200/401/403)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from radtriage.auth import AuthConfig, Authenticator, User
from radtriage.oidc import OidcConfig
from tests.integration.auth_support import api_client, bearer

AUDIENCE = "radtriage"


class IdentityProvider:
    """An OIDC issuer on 127.0.0.1: discovery document, JWKS, and the key it signs with."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "key-1", "use": "sig", "alg": "RS256"}]}
        self.hits: Counter[str] = Counter()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider.hits[self.path] += 1
                documents = {"/.well-known/openid-configuration": {"issuer": provider.issuer,
                                                                  "jwks_uri": f"{provider.issuer}/jwks"},
                             "/jwks": provider.jwks}
                if self.path not in documents:
                    self.send_error(404)
                    return
                body = json.dumps(documents[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, *, key=None, kid: str = "key-1", algorithm: str = "RS256", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "exp": now + 300, "iat": now,
                   "preferred_username": "dr.house", "roles": ["radtriage-reader"], **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key if key is not None else self.key, algorithm=algorithm, headers={"kid": kid})


def _hs256_forgery(idp: IdentityProvider, *, secret: bytes) -> str:
    """An admin token MACed with ``secret`` (PyJWT itself refuses to make one with a public key)."""
    def part(value: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    claims = {"iss": idp.issuer, "aud": AUDIENCE, "exp": int(time.time()) + 300,
              "preferred_username": "mallory", "roles": ["radtriage-admin"]}
    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "key-1"}) + b"." + part(claims)
    mac = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + mac).decode()


@pytest.fixture
def idp():
    provider = IdentityProvider()
    yield provider
    provider.server.shutdown()
    provider.server.server_close()


def _config(idp: IdentityProvider) -> AuthConfig:
    return AuthConfig(oidc=OidcConfig(issuer=idp.issuer, audience=AUDIENCE))


def test_signed_tokens_are_accepted_and_bad_ones_refused(sqlite_sessions, idp):
    client, auth = api_client(sqlite_sessions, _config(idp))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def status(token: str) -> int:
        return client.get("/api/worklist", headers=bearer(token)).status_code

    assert status(idp.token()) not in (401, 403)
    assert auth.authenticate(idp.token()) == User("dr.house", "reader")
    assert status(idp.token(aud="another-app")) == 401
    assert status(idp.token(iss="https://evil.example")) == 401
    assert status(idp.token(exp=int(time.time()) - 3600)) == 401
    assert status(idp.token(exp=None)) == 401  # a token must expire
    assert status(idp.token(key=other_key)) == 401  # same kid, wrong key
    assert status(idp.token(key=other_key, kid="key-2")) == 401  # a key the issuer never published
    # Algorithm confusion: HMAC with the published public key as the secret is refused.
    assert status(_hs256_forgery(idp, secret=public_pem)) == 401
    assert status(idp.token(preferred_username=None)) == 401
    missing_role = client.get("/api/worklist", headers=bearer(idp.token(roles=["nurse"])))
    assert missing_role.status_code == 403 and "radtriage-reader" in missing_role.json()["detail"]
    assert client.get("/api/worklist").status_code == 401
    # Discovery once, the key set once (a kid it does not know asks for it once more).
    assert idp.hits["/.well-known/openid-configuration"] == 1
    assert idp.hits["/jwks"] <= 2


def test_roles_come_from_the_configured_claims(sqlite_sessions, idp):
    config = AuthConfig(oidc=OidcConfig(issuer=idp.issuer, audience=AUDIENCE, user_claim="email",
                                        role_claim="realm_access.roles", admin_role="rt-admin",
                                        reader_role="rt-reader"))
    auth = Authenticator(sqlite_sessions, config)
    app = FastAPI()

    @app.get("/admin-only")
    def admin_only(user: User = Depends(auth.require_admin)) -> dict:
        return {"name": user.name}

    client = TestClient(app)
    admin = idp.token(email="chief@example.org", realm_access={"roles": ["rt-admin"]})
    reader = idp.token(email="resident@example.org", realm_access={"roles": ["rt-reader"]})
    assert client.get("/admin-only", headers=bearer(admin)).json() == {"name": "chief@example.org"}
    assert client.get("/admin-only", headers=bearer(reader)).status_code == 403
    assert client.get("/admin-only", headers=bearer(idp.token(email="x@example.org"))).status_code == 403


def test_an_unreachable_issuer_is_a_503_not_a_500(sqlite_sessions, idp):
    client, _ = api_client(sqlite_sessions, _config(idp))
    token = idp.token()
    idp.server.shutdown()
    idp.server.server_close()
    answer = client.get("/api/worklist", headers=bearer(token))
    assert answer.status_code == 503 and "discovery" in answer.json()["detail"]


def test_issuer_must_be_https_unless_loopback(sqlite_sessions):
    with pytest.raises(ValueError, match="https"):
        Authenticator(sqlite_sessions, AuthConfig(oidc=OidcConfig(issuer="http://idp.example", audience="x")))

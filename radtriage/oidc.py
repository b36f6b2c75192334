"""Single sign-on: bearer JWTs from the site's OIDC issuer, checked against the keys it publishes.

PyJWT does the cryptography; this module finds the issuer's JWKS through its discovery
document, keeps it cached (refetched when a token names a key it does not know), and maps
the configured claims to a user name and a role.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWKClient

from db.users import Role

__all__ = ["OidcConfig", "OidcError", "OidcVerifier", "ProviderUnavailable", "TokenRejected", "WithoutRole"]

# Asymmetric algorithms only: a JWKS publishes public keys, and accepting HS256 with a public
# key as the shared secret is the classic algorithm-confusion forgery.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    audience: str
    user_claim: str = "preferred_username"
    role_claim: str = "roles"
    admin_role: str = "radtriage-admin"
    reader_role: str = "radtriage-reader"
    timeout_seconds: float = 5.0
    keys_cache_seconds: float = 300.0
    leeway_seconds: float = 30.0  # clock skew tolerated on exp/nbf/iat


class OidcError(Exception):
    """Why a JWT was not accepted (tree: OidcError → TokenRejected | WithoutRole | ProviderUnavailable)."""


class TokenRejected(OidcError):
    """Not a valid token of this issuer for this audience (bad signature, expired, wrong aud...)."""


class WithoutRole(OidcError):
    """A valid token whose role claim holds neither the admin nor the reader role."""


class ProviderUnavailable(OidcError):
    """The issuer's discovery document or key set could not be fetched."""


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    # Keys fetched in clear text could be swapped on the way; loopback is allowed for tests
    # and for an identity provider on the same host.
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError(f"the OIDC {what} must be an https URL (got {url!r})")


class OidcVerifier:
    """Verify bearer JWTs of one issuer and audience; safe to share between threads."""

    def __init__(self, config: OidcConfig) -> None:
        _check_url(config.issuer, "issuer")
        self.config = config
        self._lock = threading.Lock()
        self._keys: PyJWKClient | None = None

    def verify(self, token: str) -> tuple[str, Role]:
        """The user name and role a valid token carries.

        Raises
        ------
        TokenRejected
            Signature, issuer, audience or expiry is wrong, or the user claim is missing.
        WithoutRole
            The token is valid but grants neither configured role.
        ProviderUnavailable
            The issuer's keys could not be fetched.
        """
        c = self.config
        keys = self._key_client()
        try:
            key = keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError as exc:
            raise ProviderUnavailable("the identity provider's keys could not be fetched") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"no key of the issuer matches the token ({exc})") from exc
        try:
            claims = jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=c.audience, issuer=c.issuer,
                                leeway=c.leeway_seconds, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            raise TokenRejected(f"token rejected: {exc}") from exc
        name = _claim(claims, c.user_claim)
        if not isinstance(name, str) or not name:
            raise TokenRejected(f"the token has no {c.user_claim!r} claim")
        roles = _claim(claims, c.role_claim)
        roles = {roles} if isinstance(roles, str) else set(roles) if isinstance(roles, list) else set()
        if c.admin_role in roles:
            return name, Role.ADMIN
        if c.reader_role in roles:
            return name, Role.READER
        raise WithoutRole(f"the token grants neither {c.reader_role!r} nor {c.admin_role!r}")

    def _key_client(self) -> PyJWKClient:
        """The JWKS client, built on first use from the issuer's discovery document."""
        with self._lock:
            if self._keys is None:
                jwks_uri = self._discover()
                self._keys = PyJWKClient(jwks_uri, lifespan=self.config.keys_cache_seconds,
                                         timeout=self.config.timeout_seconds)
            return self._keys

    def _discover(self) -> str:
        issuer = self.config.issuer
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            with urllib.request.urlopen(url, timeout=self.config.timeout_seconds) as response:
                document = json.load(response)
        except (OSError, ValueError) as exc:  # URLError and timeouts are OSErrors; bad JSON a ValueError
            raise ProviderUnavailable(f"the OIDC discovery document could not be read ({type(exc).__name__})") from exc
        if not isinstance(document, Mapping) or not isinstance(document.get("jwks_uri"), str):
            raise ProviderUnavailable("the OIDC discovery document names no jwks_uri")
        # OpenID Connect Discovery: the document must name the issuer it was fetched for.
        if document.get("issuer") != issuer:
            raise ProviderUnavailable("the OIDC discovery document is for another issuer")
        try:
            _check_url(document["jwks_uri"], "jwks_uri")
        except ValueError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        return document["jwks_uri"]


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value

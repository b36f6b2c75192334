"""Who is asking: personal API tokens, single-sign-on JWTs and the legacy shared token, as
FastAPI dependencies (401 without valid credentials, 403 without the role).

The API is open, as on a loopback-only development box, until someone is configured: once a
user exists, OIDC is set or the legacy ``http_token`` is set, every route but ``/healthz``
needs credentials. ``/metrics`` also accepts its own scrape token.

Use in routes::

    auth = Authenticator(sessions, auth_config(settings))
    @app.get("/api/x")
    def x(user: User = Depends(auth.require_reader)): ...
    @app.post("/api/admin/y", dependencies=[Depends(auth.require_admin)])
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from db.users import Role, any_user, user_for_token
from radtriage.oidc import OidcConfig, OidcVerifier, ProviderUnavailable, TokenRejected, WithoutRole
from radtriage.settings import Settings

__all__ = ["ANONYMOUS", "SHARED_TOKEN_USER", "AuthConfig", "Authenticator", "User", "auth_config", "client_address"]


@dataclass(frozen=True, slots=True)
class User:
    """The person (or shared credential) a request acts for; ``name`` goes into claims and the audit trail."""

    name: str
    role: Role

    def allows(self, role: Role | str) -> bool:
        return self.role.allows(role)


# While nobody is configured the API is open (loopback only, see serve.check_http_exposure).
ANONYMOUS = User("anonymous", Role.ADMIN)
# The legacy shared ``http_token``: one credential for everyone, so it acts as an admin.
SHARED_TOKEN_USER = User("shared-token", Role.ADMIN)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    legacy_token: str | None = None
    metrics_token: str | None = None
    oidc: OidcConfig | None = None


def auth_config(settings: Settings) -> AuthConfig:
    """The authentication part of the settings."""
    oidc = None
    if settings.oidc_issuer and settings.oidc_audience:
        oidc = OidcConfig(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                          user_claim=settings.oidc_user_claim, role_claim=settings.oidc_role_claim,
                          admin_role=settings.oidc_admin_role, reader_role=settings.oidc_reader_role)
    return AuthConfig(
        legacy_token=settings.http_token.get_secret_value() if settings.http_token else None,
        metrics_token=settings.metrics_token.get_secret_value() if settings.metrics_token else None,
        oidc=oidc,
    )


def client_address(request: Request) -> str | None:
    """The peer's address for the audit trail (uvicorn puts a trusted proxy's X-Forwarded-For here)."""
    return request.client.host if request.client else None


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class Authenticator:
    """Turns bearer credentials into a :class:`User`; its attributes are FastAPI dependencies.

    ``current_user`` (any signed-in user), ``require_reader``, ``require_admin``, ``require(role)``
    and ``metrics_access``. Each request looks its personal token up afresh, so disabling a
    user takes effect at once.

    Raises
    ------
    ValueError
        The OIDC issuer is not an https (or loopback) URL.
    """

    def __init__(self, sessions: sessionmaker[Session], config: AuthConfig = AuthConfig()) -> None:
        # ``sessions`` only read (a read-only factory spares SQLite's write lock).
        self.config = config
        self._sessions = sessions
        self._oidc = OidcVerifier(config.oidc) if config.oidc else None
        self._users_exist = False  # once true stays true: users are disabled, never deleted
        bearer = HTTPBearer(auto_error=False, description="A personal API token, an OIDC access token (JWT), "
                            "or for /metrics the scrape token")

        def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> User:
            if not self.enforced():
                user = ANONYMOUS
            else:
                user = self.authenticate(credentials.credentials if credentials else None)
                if user is None:
                    raise _unauthorised("a valid bearer token is required")
            request.state.user = user
            return user

        def metrics_access(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
            token = credentials.credentials if credentials else None
            scrape = self.config.metrics_token
            if scrape and token and secrets.compare_digest(token.encode(), scrape.encode()):
                return
            if not scrape and not self.named_users():
                return  # as before named users: /metrics open (Prometheus configs rely on it)
            if self.authenticate(token) is None:
                raise _unauthorised("the metrics scrape token or a valid user token is required")

        self.current_user: Callable[..., User] = current_user
        self.metrics_access: Callable[..., None] = metrics_access
        self.require_reader = self.require(Role.READER)
        self.require_admin = self.require(Role.ADMIN)

    def require(self, role: Role | str) -> Callable[..., User]:
        """A dependency giving the current user if their role allows ``role``, else 403."""
        role = Role(role)

        def dependency(user: User = Depends(self.current_user)) -> User:
            if not user.allows(role):
                raise HTTPException(status_code=403, detail=f"this needs the {role.value} role")
            return user

        return dependency

    def named_users(self) -> bool:
        """Whether people sign in by name: a user exists or single sign-on is configured."""
        if self._oidc is not None or self._users_exist:
            return True
        with self._sessions() as session:
            self._users_exist = any_user(session)
        return self._users_exist

    def enforced(self) -> bool:
        """Whether requests need credentials at all."""
        return bool(self.config.legacy_token) or self.named_users()

    def authenticate(self, token: str | None) -> User | None:
        """The user ``token`` stands for, None when it stands for nobody.

        Raises
        ------
        HTTPException
            401 for a single-sign-on token that fails its checks (the reason is given); 403
            for a valid one without a role; 503 when the identity provider cannot be reached.
        """
        if not token:
            return None
        legacy = self.config.legacy_token
        if legacy and secrets.compare_digest(token.encode(), legacy.encode()):
            return SHARED_TOKEN_USER
        with self._sessions() as session:
            row = user_for_token(session, token)
        if row is not None:
            return User(row.name, row.role)
        if self._oidc is None or token.count(".") != 2:
            return None
        try:
            name, role = self._oidc.verify(token)
        except TokenRejected as exc:
            raise _unauthorised(str(exc)) from exc
        except WithoutRole as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from exc
        except ProviderUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"cannot check the token now: {exc}") from exc
        return User(name, role)

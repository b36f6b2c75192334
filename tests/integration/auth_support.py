"""What the authentication tests share: an API on migrated sessions with a given AuthConfig."""

from __future__ import annotations

from fastapi.testclient import TestClient

from radtriage import health, metrics
from radtriage.api import create_api
from radtriage.auth import AuthConfig, Authenticator


def api_client(sessions, config: AuthConfig = AuthConfig()) -> tuple[TestClient, Authenticator]:
    auth = Authenticator(sessions, config)
    app = create_api(sessions=sessions, health=lambda: health.report({}), metrics=metrics.render, auth=auth)
    # Route bugs are not what these tests check: a 500 is a status, not an exception here.
    return TestClient(app, raise_server_exceptions=False), auth


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}

"""The worklist API is not served to the network when nobody must sign in; the legacy shared token still works."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dicom.errors import AccessConfigError
from radtriage import health, metrics
from radtriage.api import create_api
from radtriage.auth import AuthConfig, Authenticator
from radtriage.serve import check_http_exposure
from radtriage.settings import Settings


def test_network_bind_without_token_is_refused():
    with pytest.raises(AccessConfigError, match="radtriage users add"):
        check_http_exposure(Settings(http_host="0.0.0.0"))
    check_http_exposure(Settings(http_host="127.0.0.1"))
    check_http_exposure(Settings(http_host="0.0.0.0", http_token="s3cret"))
    check_http_exposure(Settings(http_host="0.0.0.0", http_allow_any=True))
    check_http_exposure(Settings(http_host="0.0.0.0", oidc_issuer="https://idp.example", oidc_audience="radtriage"))


def test_legacy_token_guards_the_worklist_but_not_probes(sqlite_sessions):
    app = create_api(sessions=sqlite_sessions, health=lambda: health.report({}), metrics=metrics.render,
                     auth=Authenticator(sqlite_sessions, AuthConfig(legacy_token="s3cret")))
    client = TestClient(app)
    assert client.get("/api/worklist").status_code == 401
    assert client.get("/api/worklist", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # The page shell holds no data (it signs in before calling /api/*), so a browser may load it.
    page = client.get("/")
    assert page.status_code == 200 and "Sign in" in page.text and "s3cret" not in page.text
    assert client.get("/api/worklist", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_tokens_are_never_shown():
    shown = str(Settings(http_token="s3cret", metrics_token="scrape-s3cret").public_view())
    assert "s3cret" not in shown

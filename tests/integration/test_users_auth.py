"""Named users: the CLI prints a token once and keeps its hash; every route but /healthz
needs a user once one exists; roles give 403; /metrics takes its scrape token; the exposure rule."""

from __future__ import annotations

import hashlib
import re

import pytest
from click.testing import CliRunner
from fastapi.routing import APIRoute
from sqlalchemy import select

from db.models import UserAccount
from db.users import Role, add_user
from dicom.errors import AccessConfigError
from radtriage.auth import AuthConfig
from radtriage.cli import main
from radtriage.serve import check_http_exposure
from radtriage.settings import Settings
from tests.integration.auth_support import api_client, bearer

TOKEN = re.compile(r"^rt_[A-Za-z0-9_-]{43}$")
# Open on purpose: the health probe, and the page shell with its assets, which hold no data
# (a browser cannot send a bearer on navigation; the page signs in before calling /api/*).
UNPROTECTED = {"/healthz", "/", "/static/{name}", "/docs", "/docs/assets/{name}"}


@pytest.fixture
def cli(monkeypatch, database_url):
    monkeypatch.setenv("RADTRIAGE_DATABASE_URL", database_url)
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        return result

    return run


def _add(sessions, name: str, role: Role) -> str:
    with sessions.begin() as session:
        return add_user(session, name=name, role=role)


def test_users_add_prints_the_token_once_and_stores_only_its_hash(cli, database_url):
    added = cli("users", "add", "alice", "--role", "reader")
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert TOKEN.match(token)
    again = cli("users", "add", "alice", "--role", "admin")
    assert again.exit_code == 1 and "already exists" in again.output and "rt_" not in again.output
    assert cli("users", "add", "bob", "--role", "admin").exit_code == 0
    bad = cli("users", "add", "carol", "--role", "owner")
    assert bad.exit_code == 2 and "owner" in bad.output

    listed = cli("users", "list")
    assert listed.exit_code == 0
    lines = [line.split("\t")[:3] for line in listed.stdout.splitlines()]
    assert lines == [["alice", "reader", "enabled"], ["bob", "admin", "enabled"]]
    assert "rt_" not in listed.output  # tokens are never shown again

    from db.session import make_engine

    engine = make_engine(database_url)
    with engine.connect() as connection:
        stored = connection.execute(select(UserAccount.token_hash).where(UserAccount.name == "alice")).scalar_one()
        dump = "\n".join(str(row) for row in connection.execute(select(UserAccount)))
    engine.dispose()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    assert token not in dump and token[3:] not in dump

    disabled = cli("users", "disable", "alice")
    assert disabled.exit_code == 0 and "disabled" in disabled.output
    assert cli("users", "disable", "alice").stdout.strip() == "alice was already disabled"
    assert cli("users", "disable", "nobody").exit_code == 1
    assert [line.split("\t")[2].split()[0] for line in cli("users", "list").stdout.splitlines()] == [
        "disabled", "enabled"]


def test_a_disabled_users_token_gets_401(sqlite_sessions, monkeypatch, tmp_path):
    token = _add(sqlite_sessions, "alice", Role.READER)
    client, _ = api_client(sqlite_sessions)
    assert client.get("/api/worklist", headers=bearer(token)).status_code not in (401, 403)
    monkeypatch.setenv("RADTRIAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'radtriage.sqlite3'}")
    assert CliRunner().invoke(main, ["users", "disable", "alice"]).exit_code == 0
    refused = client.get("/api/worklist", headers=bearer(token))
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def _routes(app) -> list:
    """Every route of ``app``, routers included (FastAPI ≥ 0.130 keeps included routers as one entry)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI copies included routes into app.routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _requires(route, dependency) -> bool:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is dependency:
            return True
        stack.extend(dependant.dependencies)
    return False


def _status(client, method: str, url: str, headers: dict) -> tuple[int, str | None]:
    # Streamed, so that an event stream answers with its status instead of running forever.
    with client.stream(method, url, headers=headers) as answer:
        return answer.status_code, answer.headers.get("www-authenticate")


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1.2.840.1", path)


def test_every_route_but_healthz_needs_a_user_and_the_right_role(sessions):
    reader = _add(sessions, "reader1", Role.READER)
    admin = _add(sessions, "admin1", Role.ADMIN)
    client, auth = api_client(sessions, AuthConfig(metrics_token="scrape-me"))
    app = client.app
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    checked = 0
    for route in _routes(app):
        if not isinstance(getattr(route, "original_route", route), APIRoute):
            # FastAPI's own schema and docs pages carry no patient data; anything else
            # (e.g. mounted files) must be listed here on purpose.
            assert route.path in docs, f"{route.path}: not an API route, decide whether it needs a user"
            continue
        if route.path in UNPROTECTED:
            continue
        admin_only = _requires(route, auth.require_admin)
        for method in route.methods - {"HEAD"}:
            url = _url(route.path)
            for headers in ({}, bearer("rt_not-a-token"), bearer("not.a.jwt")):
                assert _status(client, method, url, headers) == (401, "Bearer"), f"{method} {route.path}"
            as_reader, _ = _status(client, method, url, bearer(reader))
            assert as_reader == 403 if admin_only else as_reader not in (401, 403), f"{method} {route.path}"
            assert _status(client, method, url, bearer(admin))[0] not in (401, 403), f"{method} {route.path}"
            checked += 1
    assert checked >= 3  # the worklist, the page and /metrics at least
    assert client.get("/healthz").status_code == 200


def test_metrics_takes_its_scrape_token_or_a_user(sqlite_sessions):
    reader = _add(sqlite_sessions, "reader1", Role.READER)
    client, _ = api_client(sqlite_sessions, AuthConfig(metrics_token="scrape-me"))
    assert client.get("/metrics", headers=bearer("scrape-me")).status_code == 200
    assert client.get("/metrics", headers=bearer(reader)).status_code == 200
    assert client.get("/metrics", headers=bearer("scrape-you")).status_code == 401
    assert client.get("/metrics").status_code == 401
    # The scrape token opens /metrics only.
    assert client.get("/api/worklist", headers=bearer("scrape-me")).status_code == 401


def test_open_until_someone_is_configured(sqlite_sessions):
    client, _ = api_client(sqlite_sessions)
    assert client.get("/api/worklist").status_code not in (401, 403)
    assert client.get("/metrics").status_code == 200
    _add(sqlite_sessions, "alice", Role.READER)
    assert client.get("/api/worklist").status_code == 401
    assert client.get("/metrics").status_code == 401


def test_legacy_token_acts_as_an_admin_beside_named_users(sqlite_sessions):
    _add(sqlite_sessions, "alice", Role.READER)
    client, auth = api_client(sqlite_sessions, AuthConfig(legacy_token="s3cret"))
    assert client.get("/api/worklist", headers=bearer("s3cret")).status_code not in (401, 403)
    assert auth.authenticate("s3cret").role is Role.ADMIN


def test_network_bind_needs_a_user_in_the_database(sqlite_sessions):
    exposed = Settings(http_host="0.0.0.0")
    with pytest.raises(AccessConfigError, match="radtriage users add"):
        check_http_exposure(exposed, sqlite_sessions)
    _add(sqlite_sessions, "alice", Role.ADMIN)
    check_http_exposure(exposed, sqlite_sessions)

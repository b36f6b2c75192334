"""The database down: every HTTP route of a running daemon answers 503 with a JSON reason, never 500;
a browser asking for the page gets it with the 503 (it shows the API's reason and tries again),
and the page's assets, files of the package, still load."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy import create_engine

from db.session import make_session_factory
from radtriage.api import create_api
from tests.e2e.daemon import Daemon
from tests.reliability.harness import report
from tests.reliability.outages import PrivatePostgres

pytestmark = pytest.mark.reliability

_EXAMPLES = {"uid": "1.2.826.0.1.3680043.8.498.1", "delivery_id": "1"}
ASSETS = ["/static/app.js", "/static/app.css"]  # files of the package


def routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the API, path parameters filled in."""
    app = create_api(sessions=make_session_factory(create_engine("sqlite://")),
                     health=lambda: {"status": "ok", "components": {}}, metrics=lambda: (b"", "text/plain"))
    found = []
    for path, operations in app.openapi()["paths"].items():
        filled = re.sub(r"\{(\w+)\}", lambda m: _EXAMPLES[m.group(1)], path)
        found += [(method.upper(), filled) for method in operations]
    return found + [("GET", "/")]  # the page: outside the schema, but it needs the database too


def call(port: int, method: str, path: str, accept: str = "*/*") -> tuple[int, bytes, str]:
    data = b"{}" if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=data,
                                     headers={"Content-Type": "application/json", "Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            content_type = answer.headers.get("Content-Type", "")
            # An event stream never ends: its status and headers are the answer.
            body = b"" if content_type.startswith("text/event-stream") else answer.read()
            return answer.status, body, content_type
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_every_route_answers_503_without_the_database(tmp_path, request):
    postgres = PrivatePostgres()
    postgres.start()
    try:
        with Daemon(tmp_path / "run", RADTRIAGE_DATABASE_URL=postgres.url) as daemon:
            up = {path: call(daemon.http_port, method, path)[0] for method, path in routes()}
            assert 500 not in up.values(), up
            postgres.stop()
            stopped = time.monotonic()
            answers = {(method, path): call(daemon.http_port, method, path) for method, path in routes()}
            assets = {path: call(daemon.http_port, "GET", path)[0] for path in ASSETS}
            browser = call(daemon.http_port, "GET", "/", accept="text/html,application/xhtml+xml")
            seconds = time.monotonic() - stopped
            health = json.loads(answers[("GET", "/healthz")][1])
            postgres.start()
            daemon.wait_for(lambda: call(daemon.http_port, "GET", "/api/worklist")[0] == 200, 60,
                            "the worklist back with the database")
    finally:
        postgres.close()

    report(request, routes=len(answers), answered_503=sum(a[0] == 503 for a in answers.values()),
           answered_500=sum(a[0] == 500 for a in answers.values()), seconds_for_all=seconds)
    wrong = {route: status for route, (status, _, _) in answers.items() if status != 503}
    assert wrong == {}, wrong
    for route, (_, body, content_type) in answers.items():
        assert content_type.startswith("application/json"), route
        if route[1] != "/healthz":
            assert json.loads(body) == {"detail": "database unavailable"}, route
    assert health["status"] == "degraded" and health["components"]["database"]["status"] == "error"
    assert assets == {path: 200 for path in ASSETS}
    assert browser[0] == 503 and browser[2].startswith("text/html") and b"<html" in browser[1].lower()

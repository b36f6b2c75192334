"""Without its database the API answers 503 with a JSON reason, never 500, in process and at
once (the running daemon's outage is in tests/reliability/test_db_down_http.py): the worklist,
and the page, which a browser still gets so it can show the reason and try again."""

from __future__ import annotations

import socket

from fastapi.testclient import TestClient

from db.session import make_engine, make_session_factory
from radtriage.api import create_api


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def _client() -> TestClient:
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test?connect_timeout=2")
    app = create_api(sessions=make_session_factory(engine), health=lambda: {"status": "degraded"},
                     metrics=lambda: (b"", "text/plain"))
    return TestClient(app, raise_server_exceptions=False)


def test_worklist_and_page_answer_503_with_the_reason():
    client = _client()
    for path in ("/api/worklist", "/"):
        answer = client.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 503, path
        assert answer.json() == {"detail": "database unavailable"}
        assert answer.headers["Retry-After"] == "5"


def test_a_browser_gets_the_page_with_the_503():
    answer = _client().get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("text/html")
    assert "<html" in answer.text.lower()


def test_the_page_is_200_while_the_database_answers(sqlite_sessions):
    app = create_api(sessions=sqlite_sessions, health=lambda: {"status": "ok"}, metrics=lambda: (b"", "text/plain"))
    assert TestClient(app).get("/", headers={"Accept": "text/html"}).status_code == 200

"""GET /api/events over a real server: a change arrives as an event with an id, a reconnect with
Last-Event-ID resumes after it, idle streams get keep-alives, and shutdown ends open streams."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import httpx
import uvicorn

from common import Priority
from db.event_feed import database_reads
from db.models import utcnow
from db.session import make_session_factory
from radtriage import health, metrics
from radtriage.api import create_api
from radtriage.api_feed import EventFeed
from tests.api_support import add_study, user
from tests.e2e.daemon import free_port


class Frames:
    """The blocks of one event stream, read as far as a test needs."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_text()
        self.blocks: list[str] = []
        self._buffer = ""

    def until(self, want, timeout: float = 10.0) -> list[str]:
        """Read blocks until ``want(blocks)`` holds; the blocks read by then."""
        deadline = time.monotonic() + timeout
        while not want(self.blocks):
            assert time.monotonic() < deadline, f"not within {timeout} s: {self.blocks}"
            self._buffer += next(self._chunks)
            while "\n\n" in self._buffer:
                block, self._buffer = self._buffer.split("\n\n", 1)
                self.blocks.append(block)
        return self.blocks


def events_of(blocks: list[str]) -> list[tuple[int, dict]]:
    found = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line.startswith(("id:", "data:")))
        if "id" in lines:
            found.append((int(lines["id"]), json.loads(lines["data"])))
    return found


def test_a_change_streams_with_an_id_and_a_reconnect_resumes_after_it(sqlite_sessions):
    uid = add_study(sqlite_sessions, 1, Priority.URGENT, received=utcnow())
    alice = user(sqlite_sessions, "alice")
    reads = make_session_factory(sqlite_sessions.kw["bind"], readonly=True)
    read_after, read_last = database_reads(reads)
    feed = EventFeed(read_after=read_after, read_last=read_last, poll_seconds=0.05, keepalive_seconds=0.3)
    app = create_api(sessions=sqlite_sessions, health=lambda: health.report({}), metrics=metrics.render, events=feed)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=base, headers=alice, timeout=10) as http:
            with http.stream("GET", "/api/events") as stream:
                assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
                live = Frames(stream)
                live.until(lambda b: any("connected" in x for x in b))  # subscribed: now change something
                assert http.post(f"/api/studies/{uid}/claim").status_code == 200
                blocks = live.until(lambda b: events_of(b))
                ((claim_id, claimed),) = events_of(blocks)
                assert claimed["study_instance_uid"] == uid and claimed["stage"] == "claimed"
                assert "alice" not in str(blocks)  # the stream says what changed, not who (the API does)
                assert http.post(f"/api/studies/{uid}/read").status_code == 200
                live.until(lambda b: any(": keep-alive" in x for x in b))  # idle: kept alive
            # Reconnecting after the claim gets the read that followed it, and nothing before.
            with http.stream("GET", "/api/events", headers={"Last-Event-ID": str(claim_id)}) as again:
                resumed = events_of(Frames(again).until(lambda b: events_of(b)))
                assert [(e["stage"], i > claim_id) for i, e in resumed] == [("read", True)]
            assert http.get("/api/events", headers={"Last-Event-ID": "x1"}).status_code == 400
            with http.stream("GET", "/api/events") as open_stream:
                assert open_stream.status_code == 200
                started = time.monotonic()
                feed.close()  # what the daemon's stop does: open streams end, the server can stop
                with contextlib.suppress(httpx.HTTPError):
                    for _ in open_stream.iter_bytes():
                        pass
                assert time.monotonic() - started < 3
    finally:
        server.should_exit = True
        thread.join(10)
    assert not thread.is_alive()

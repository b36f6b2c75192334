"""The event feed behind ``GET /api/events``: one poller per app reads new rows of the events
table by id (``db.event_feed``) and wakes every open stream; each stream sends what lies past its own cursor as ``id:``/``data:`` frames,
so a client reconnecting with ``Last-Event-ID`` resumes where it stopped (from the poller's
recent buffer, or from the database when it was away longer). A comment every
``keepalive_seconds`` keeps proxies from closing an idle stream; ``close()`` ends every stream
within a second, for shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import AsyncIterator

from sqlalchemy.exc import SQLAlchemyError

from db.event_feed import FeedEvent, ReadAfter, ReadLast
from radtriage.api_models import iso_utc

log = logging.getLogger(__name__)

_BATCH = 500  # rows per database read; a stream far behind catches up in rounds
_BUFFER = 2000  # recent events kept in memory for streams that are a little behind


def frame(event: FeedEvent) -> str:
    """One event as a server-sent event frame."""
    data = json.dumps({"study_instance_uid": event.study_instance_uid, "stage": event.stage, "at": iso_utc(event.at)})
    return f"id: {event.id}\nevent: study\ndata: {data}\n\n"


class EventFeed:
    """The shared poller and the streams that follow it."""

    def __init__(self, *, read_after: ReadAfter, read_last: ReadLast, poll_seconds: float = 0.5,
                 keepalive_seconds: float = 15.0) -> None:
        self._read_after, self._read_last = read_after, read_last
        self.poll_seconds, self.keepalive_seconds = poll_seconds, keepalive_seconds
        self._buffer: collections.deque[FeedEvent] = collections.deque(maxlen=_BUFFER)
        self._last_id: int | None = None
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task | None = None
        self._closed = threading.Event()  # set from any thread (the daemon's stop)

    def close(self) -> None:
        """End the poller and every stream (within about a second)."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def start(self) -> None:
        """Read where the feed stands (raises while the database is away) and start polling."""
        # One poller per event loop: a test client may serve each request on a loop of its own.
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._changed = asyncio.Condition()
            self._last_id = await asyncio.to_thread(self._read_last)
            self._task = asyncio.create_task(self._poll(), name="event-feed")

    async def _poll(self) -> None:
        while not self.closed:
            try:
                events = await asyncio.to_thread(self._read_after, self._last_id, _BATCH)
            except (SQLAlchemyError, OSError) as exc:  # the database is away: streams stay open, we try again
                log.warning("event feed read failed (%s)", type(exc).__name__)
                events = []
            if events:
                self._buffer.extend(events)
                self._last_id = events[-1].id
                async with self._changed:
                    self._changed.notify_all()
            if len(events) < _BATCH:
                await asyncio.sleep(self.poll_seconds)

    async def _after(self, cursor: int) -> list[FeedEvent]:
        if self._buffer and self._buffer[0].id <= cursor + 1:
            return [e for e in self._buffer if e.id > cursor]
        if cursor >= (self._last_id or 0):
            return []
        return await asyncio.to_thread(self._read_after, cursor, _BATCH)  # further behind than the buffer

    async def stream(self, last_event_id: int | None) -> AsyncIterator[str]:
        """Frames for one client: what happened after ``last_event_id`` (None: from now)."""
        await self.start()
        cursor = self._last_id if last_event_id is None else last_event_id
        yield "retry: 2000\n: connected\n\n"
        quiet_since = time.monotonic()
        while not self.closed:
            events = await self._after(cursor)
            if events:
                cursor = events[-1].id
                quiet_since = time.monotonic()
                yield "".join(frame(e) for e in events)
                continue
            if time.monotonic() - quiet_since >= self.keepalive_seconds:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            async with self._changed:
                try:  # wake at least every second to notice close() and to keep alive
                    await asyncio.wait_for(self._changed.wait(), timeout=min(1.0, self.keepalive_seconds))
                except TimeoutError:
                    pass

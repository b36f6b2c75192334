"""Worker heartbeats: a daemon thread in each worker process beats for it (``host:pid``), so the
sweep can tell a dead worker from a busy one, and removes the row when the worker stops.

A thread, not a sidecar process: a sidecar cost a whole interpreter per worker (~58 MB) to
survive a worker holding the GIL for seconds. A beat needs the GIL for a moment every
``lost_after / 3`` seconds; model loading and inference run in C with the GIL released most of
the time, and Python hands the GIL to another thread every few milliseconds otherwise, so a
busy worker still beats well within ``lost_after``. A worker that dies stops beating, and the
supervisor (or, silent for ``lost_after``, the sweep) re-drives what it had claimed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)


def worker_name(pid: int | None = None) -> str:
    """How a worker process is known in heartbeats and claims: ``host:pid``."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


class Heartbeat:
    """Beats for this process every ``interval`` seconds from a daemon thread until :meth:`terminate`.

    Parameters
    ----------
    database_url : str
        Where the ``worker_heartbeats`` table is (an engine of its own: no pool is shared with tasks).
    queues : str
        The queues the worker consumes, as recorded with each beat.
    interval : float
        Seconds between beats.
    """

    def __init__(self, database_url: str, *, queues: str, interval: float) -> None:
        self.name = worker_name()
        self._url, self._queues, self._interval = database_url, queues, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def terminate(self) -> None:
        """Stop beating and remove this worker's row (it no longer runs anything)."""
        self._stop.set()
        self._thread.join(timeout=max(5.0, self._interval))

    def _run(self) -> None:
        from db import heartbeats
        from db.session import make_engine, make_session_factory

        engine = make_engine(self._url)
        sessions = make_session_factory(engine)
        while not self._stop.is_set():
            try:
                with sessions() as session:
                    heartbeats.beat(session, name=self.name, queues=self._queues)
            except Exception as exc:  # noqa: BLE001  the database being away must not end the beats
                log.warning("heartbeat failed (%s)", type(exc).__name__)
            self._stop.wait(self._interval)
        try:
            with sessions() as session:
                heartbeats.forget(session, name=self.name)
        except Exception as exc:  # noqa: BLE001  the sweep forgets it once it is silent
            log.warning("heartbeat row not removed (%s)", type(exc).__name__)
        engine.dispose()


def start(database_url: str, *, queues: str, lost_after: float) -> Heartbeat:
    """Start beating for this process (call it in the process that runs the tasks: after a
    fork, each child starts its own); it beats three times per ``lost_after``."""
    interval = max(0.5, min(5.0, lost_after / 3))
    return Heartbeat(database_url, queues=queues, interval=interval).start()

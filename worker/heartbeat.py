"""A thread in each worker process that records a heartbeat row every few seconds."""

from __future__ import annotations

import logging
import os
import socket
import threading

from db import heartbeats

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 5.0


def start(sessions_factory, *, queues: str) -> threading.Event:
    """Beat until the returned event is set; the row is removed on a clean stop."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                with sessions_factory()() as session:
                    heartbeats.beat(session, name=name, queues=queues)
            except Exception as exc:  # the database being away must not kill the worker
                log.warning("heartbeat failed (%s)", type(exc).__name__)
            stop.wait(INTERVAL_SECONDS)
        try:
            with sessions_factory()() as session:
                heartbeats.forget(session, name=name)
        except Exception:
            pass

    threading.Thread(target=run, name="heartbeat", daemon=True).start()
    return stop

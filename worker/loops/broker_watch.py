"""What the sweep asks the broker each round: how many messages each queue holds, and whether
the broker was away or restarted since the last round (then the messages it held may be gone).

A Redis restarted without persistence loses every message it held, and a short restart may
fall between two publishes; Redis's ``run_id`` changes with each start, so a restart is seen
even when no round failed. The embedded broker lives in the data folder and is never away.
"""

from __future__ import annotations

import dataclasses
import logging

from celery import Celery

from common import Queue

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerState:
    sizes: dict[str, int]  # queue name → messages waiting (reserved by a worker: not counted)
    came_back: bool  # away or restarted since the last round: messages may have been lost


class BrokerWatch:
    """One connection attempt per round, none retried: an unreachable broker answers None."""

    def __init__(self, app: Celery, *, queues: tuple[Queue, ...] = (Queue.TRIAGE, Queue.DRAFT)) -> None:
        self._app = app
        self._queues = queues
        self._identity: str | None = None
        self._away = False

    def look(self) -> BrokerState | None:
        try:
            with self._app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=5)
                channel = connection.default_channel
                sizes = {q.value: channel.queue_declare(queue=q.value).message_count for q in self._queues}
                identity = _server_identity(channel)
        except Exception as exc:  # noqa: BLE001  away, whatever the transport raises; the outbox keeps the rows
            if not self._away:
                log.warning("broker unreachable (%s)", type(exc).__name__)
            self._away = True
            return None
        restarted = identity is not None and self._identity is not None and identity != self._identity
        came_back = self._away or restarted
        if came_back:
            log.warning("broker %s: queued studies are sent again", "restarted" if restarted else "back")
        self._away, self._identity = False, identity
        return BrokerState(sizes, came_back)


def _server_identity(channel) -> str | None:
    """Redis's ``run_id`` (new at each server start); None for brokers without one."""
    client = getattr(channel, "client", None)
    info = getattr(client, "info", None)
    if info is None:
        return None
    return str(info("server").get("run_id"))

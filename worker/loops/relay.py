"""The outbox relay: publish committed outbox rows to the broker, then mark them sent.

A broker outage only delays work: rows stay unsent and go out when it returns. A crash
between publishing and marking can publish a row twice; tasks are idempotent per study
revision, so the second delivery does nothing.
"""

from __future__ import annotations

import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from common import Queue
from db import outbox
from worker.tasks.app import REDIS_PRIORITY_BY_RANK

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, *, app: Celery, sessions: sessionmaker[Session], on_published=None) -> None:
        self._app = app
        self._sessions = sessions
        self._on_published = on_published
        self.broker_ok: bool | None = None

    def run_once(self) -> int:
        """Publish what is pending; returns how many rows were published.

        No transaction is held while publishing (a broker retrying must not hold SQLite's
        write lock against the listener): read, publish, then mark in a second transaction.
        """
        with self._sessions() as session:
            messages = outbox.pending(session)
        sent: list[int] = []
        try:
            for message in messages:
                self._app.send_task(
                    Queue(message.task).task_name,
                    args=[message.study_id, message.revision],
                    queue=message.task,
                    priority=REDIS_PRIORITY_BY_RANK.get(message.priority_rank, 6),
                )
                sent.append(message.id)
            self.broker_ok = True
        except Exception as exc:  # the broker is down: keep the rest for the next round
            if self.broker_ok is not False:
                log.warning("broker unavailable (%s); %d message(s) wait in the outbox",
                            type(exc).__name__, len(messages) - len(sent))
            self.broker_ok = False
        if sent:
            with self._sessions() as session:
                outbox.mark_sent(session, ids=sent)
            if self._on_published:
                self._on_published(len(sent))
        return len(sent)

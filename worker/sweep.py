"""The reconciliation sweep, run by ``serve`` on start-up and on a timer."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from db.reconcile import redrive_stuck
from radtriage import metrics
from radtriage.settings import Settings

log = logging.getLogger(__name__)


class Sweep:
    def __init__(self, *, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._running_timeout = settings.running_timeout_seconds
        self._queued_timeout = settings.queued_timeout_seconds
        self._lost_after = settings.worker_lost_seconds

    def run_once(self) -> int:
        with self._sessions() as session:
            redriven = redrive_stuck(
                session, running_timeout=self._running_timeout, queued_timeout=self._queued_timeout,
                worker_lost_after=self._lost_after,
            )
        for queue, ids in (("triage", redriven.triage), ("draft", redriven.draft)):
            if ids:
                metrics.SWEEP_REDRIVEN.labels(queue=queue).inc(len(ids))
                log.warning("sweep queued %d stuck study(ies) again for %s: #%s", len(ids), queue,
                            ", #".join(map(str, ids)))
        return len(redriven)

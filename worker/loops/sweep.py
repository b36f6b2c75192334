"""The reconciliation sweep, run by ``serve`` on start-up and on a timer: re-queues what a crash left half-done."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from common import Queue
from db.reconcile import redrive_stuck

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class SweepConfig:
    """When a study counts as stuck.

    Parameters
    ----------
    running_timeout_seconds : float
        A triage or draft running longer is presumed hung.
    queued_timeout_seconds : float
        A study queued this long with no message waiting is queued again.
    worker_lost_seconds : float
        A worker silent this long is presumed dead.
    """

    running_timeout_seconds: float
    queued_timeout_seconds: float
    worker_lost_seconds: float


class Sweep:
    """One round re-queues every stuck study; ``on_redriven(queue, count)`` is told (metrics)."""

    def __init__(self, *, sessions: sessionmaker[Session], config: SweepConfig,
                 on_redriven: Callable[[str, int], None] | None = None) -> None:
        self._sessions = sessions
        self._config = config
        self._on_redriven = on_redriven

    def run_once(self) -> int:
        with self._sessions() as session:
            redriven = redrive_stuck(
                session, running_timeout=self._config.running_timeout_seconds,
                queued_timeout=self._config.queued_timeout_seconds,
                worker_lost_after=self._config.worker_lost_seconds,
            )
        for queue, ids in ((Queue.TRIAGE, redriven.triage), (Queue.DRAFT, redriven.draft)):
            if ids:
                if self._on_redriven:
                    self._on_redriven(queue.value, len(ids))
                log.warning("sweep queued %d stuck study(ies) again for %s: #%s", len(ids), queue,
                            ", #".join(map(str, ids)))
        return len(redriven)

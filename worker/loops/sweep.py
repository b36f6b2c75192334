"""The reconciliation sweep, run by ``serve`` on start-up and on a timer: re-queues what a crash left half-done.

Each round also notices when messages may have been lost and sends the queued studies again:
the first round (a restart: the last run's workers may have held messages), a worker that
stopped beating since the last round (it held its reserved message), the broker coming
back or restarting (it may have dropped what it held, see :mod:`worker.loops.broker_watch`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from common import Queue
from db.heartbeats import fresh_names
from db.reconcile import redrive_stuck
from worker.loops.broker_watch import BrokerWatch

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
    queued_idle_seconds : float
        A study queued this long while the broker holds no message for its queue is queued again.
    """

    running_timeout_seconds: float
    queued_timeout_seconds: float
    worker_lost_seconds: float
    queued_idle_seconds: float = 10.0


class Sweep:
    """One round re-queues every stuck study; ``on_redriven(queue, count)`` is told (metrics)."""

    def __init__(self, *, sessions: sessionmaker[Session], config: SweepConfig,
                 on_redriven: Callable[[str, int], None] | None = None, broker: BrokerWatch | None = None) -> None:
        self._sessions = sessions
        self._config = config
        self._on_redriven = on_redriven
        self._broker = broker
        self._alive: set[str] | None = None  # workers beating at the last round; None before the first
        self._why: str | None = None  # why queued studies must be sent again, until a round succeeds

    def run_once(self) -> int:
        config = self._config
        state = self._broker.look() if self._broker is not None else None
        with self._sessions() as session:
            alive = fresh_names(session, within_seconds=config.worker_lost_seconds)
            gone = self._alive - alive if self._alive is not None else set()
            why = self._why = self._why or (
                "start-up" if self._alive is None else "a worker stopped" if gone
                else "the broker came back" if state is not None and state.came_back else None)
            redriven = redrive_stuck(
                session, running_timeout=config.running_timeout_seconds,
                queued_timeout=config.queued_timeout_seconds, worker_lost_after=config.worker_lost_seconds,
                queued_idle=config.queued_idle_seconds, requeue_waiting=why is not None,
                idle_queues={queue for queue, size in state.sizes.items() if size == 0} if state else (),
            )
        self._alive, self._why = alive, None
        if why and redriven:
            log.info("queued studies sent again after %s (messages may have been lost)", why)
        for queue, ids in ((Queue.TRIAGE, redriven.triage), (Queue.DRAFT, redriven.draft)):
            if ids:
                if self._on_redriven:
                    self._on_redriven(queue.value, len(ids))
                log.warning("sweep queued %d stuck study(ies) again for %s: #%s", len(ids), queue,
                            ", #".join(map(str, ids)))
        return len(redriven)

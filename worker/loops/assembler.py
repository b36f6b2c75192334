"""The assembler loop: completes studies whose views are complete (after a grace) or that went quiet."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db.assembly import complete_quiet_studies

log = logging.getLogger(__name__)


class Assembler:
    """One round per ``poll_seconds``; all state is in the database, so a restart loses nothing.

    Parameters
    ----------
    sessions : sessionmaker
    stable_seconds : float
        The quiet timer: a study nobody added to for this long is complete.
    grace_seconds : float or None
        A study whose views are complete completes this long after its last instance;
        None turns the view rule off.
    on_completed : callable, optional
        Called with the number of studies each round completed (metrics).
    wake : callable, optional
        Called after a round that completed studies: wakes the outbox relay, so their
        triage messages go out now rather than on the relay's next tick.
    """

    def __init__(self, *, sessions: sessionmaker[Session], stable_seconds: float, grace_seconds: float | None = 0.5,
                 on_completed: Callable[[int], None] | None = None, wake: Callable[[], None] | None = None) -> None:
        self._sessions = sessions
        self._stable = stable_seconds
        self._grace = grace_seconds
        self._on_completed = on_completed
        self._wake = wake
        # Check often enough that completion lags the shorter wait by at most ~10 %; a
        # round that finds nothing due only reads, and rounds run at most 20 times a second.
        shortest = min(stable_seconds, grace_seconds) if grace_seconds is not None else stable_seconds
        self.poll_seconds = min(0.5, max(0.05, shortest / 10))

    def run_once(self) -> list[int]:
        with self._sessions() as session:
            completed = complete_quiet_studies(session, stable_seconds=self._stable, grace_seconds=self._grace)
        if completed:
            log.info("%d study(ies) complete: #%s", len(completed), ", #".join(map(str, completed)))
            if self._wake:
                self._wake()
            if self._on_completed:
                self._on_completed(len(completed))
        return completed

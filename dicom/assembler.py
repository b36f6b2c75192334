"""The assembler loop: completes studies that have been quiet for the stable time."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from db.assembly import complete_quiet_studies

log = logging.getLogger(__name__)


class Assembler:
    def __init__(self, *, sessions: sessionmaker[Session], stable_seconds: float,
                 on_completed: Callable[[int], None] | None = None) -> None:
        self._sessions = sessions
        self._stable = stable_seconds
        self._on_completed = on_completed
        # Check often enough that completion lags the quiet time by at most ~10 %.
        self.poll_seconds = min(0.5, max(0.05, stable_seconds / 10))

    def run_once(self) -> list[int]:
        with self._sessions() as session:
            completed = complete_quiet_studies(session, stable_seconds=self._stable)
        if completed:
            log.info("%d study(ies) complete: #%s", len(completed), ", #".join(map(str, completed)))
            if self._on_completed:
                self._on_completed(len(completed))
        return completed

"""The escalation loop: raises the effective priority of unread studies that waited past a
boundary (one event per step) and releases readers' claims left idle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from sqlalchemy.orm import Session, sessionmaker

from common import Waits
from db.escalation import escalate_due
from db.models import utcnow
from db.reading import expire_idle_claims

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class EscalationRound:
    escalated: int  # steps taken
    expired: int  # claims released


class EscalationLoop:
    """One round per ``poll_seconds``; all state is in the database, so a restart loses nothing.

    Parameters
    ----------
    sessions : sessionmaker
    waits : Waits
        The maximum wait of each class.
    claim_idle : timedelta
        A reader's claim nobody acted on for this long expires.
    """

    def __init__(self, *, sessions: sessionmaker[Session], waits: Waits, claim_idle: dt.timedelta,
                 poll_seconds: float = 15.0) -> None:
        self._sessions, self._waits, self._claim_idle = sessions, waits, claim_idle
        self.poll_seconds = poll_seconds

    def run_once(self, now: dt.datetime | None = None) -> EscalationRound:
        now = now or utcnow()
        with self._sessions() as session:
            escalated = escalate_due(session, waits=self._waits, now=now)
        with self._sessions() as session:
            expired = expire_idle_claims(session, idle_after=self._claim_idle, now=now)
        if escalated or expired:
            log.info("%d escalation step(s), %d idle claim(s) released", escalated, expired)
        return EscalationRound(escalated, expired)

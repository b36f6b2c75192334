"""The audit trail: who viewed, claimed, released, read or exported which study, and admin
actions; rows in the database, written in the same transaction as the action, never logged."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import AuditEntry, as_utc, utcnow

__all__ = ["AuditAction", "AuditRow", "entries_since", "record"]


class AuditAction(StrEnum):
    VIEW = "view"  # a study's detail (patient and study header) was shown
    CLAIM = "claim"
    RELEASE = "release"
    READ = "read"
    EXPORT = "export"
    USER_ADD = "user_add"
    USER_DISABLE = "user_disable"
    DELIVERY_RETRY = "delivery_retry"  # an admin sent a dead letter back to pending
    DELIVERY_DROP = "delivery_drop"  # an admin dropped a dead letter for good


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: dt.datetime
    user: str
    action: AuditAction
    study_id: int | None
    address: str | None
    detail: str


def record(session: Session, *, user: str, action: AuditAction | str, study_id: int | None = None,
           address: str | None = None, detail: str = "", now: dt.datetime | None = None) -> None:
    """Add an audit row to ``session``; it commits with the action it records, or not at all.

    ``detail`` must carry no patient data (it is shown to anyone who reads the trail).

    Raises
    ------
    ValueError
        ``action`` is not an :class:`AuditAction`, or ``user`` is empty.
    """
    action = AuditAction(action)
    if not user:
        raise ValueError("an audit row needs the name of who acted")
    session.add(AuditEntry(at=now or utcnow(), user_name=user[:128], action=action.value, study_id=study_id,
                           address=address[:64] if address else None, detail=detail))


def entries_since(session: Session, *, since: dt.datetime) -> list[AuditRow]:
    """The rows recorded at or after ``since``, oldest first."""
    since = since.astimezone(dt.UTC)  # stored in UTC (SQLite keeps no offset)
    query = select(AuditEntry).where(AuditEntry.at >= since).order_by(AuditEntry.at, AuditEntry.id)
    return [AuditRow(as_utc(e.at), e.user_name, AuditAction(e.action), e.study_id, e.address, e.detail)
            for e in session.scalars(query)]

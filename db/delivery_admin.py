"""The operator's view of deliveries: each destination's state, backlog, oldest waiting delivery
and last error, the dead letters, and the two things an admin may do to a dead letter: send it
again (back to pending, attempts reset) or drop it. Callers commit, with the audit row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from common.delivery import Content, DeliveryStatus
from db.models import Delivery, DeliveryDestination, Study, as_utc, utcnow

__all__ = ["Changed", "DeadLetter", "DeliveryNotFound", "DestinationState", "NotDeadLetter", "dead_letters",
           "destination_states", "drop", "retry"]


class DeliveryNotFound(LookupError):
    """No delivery has the id."""


class NotDeadLetter(ValueError):
    """The delivery is pending, sent or dropped: only a dead letter can be retried or dropped."""


@dataclass(frozen=True, slots=True)
class DestinationState:
    destination: str
    kind: str | None  # a common.delivery.DestinationKind; None for rows of a destination never mirrored
    receives: tuple[str, ...]
    active: bool  # False: no longer in the settings (its rows stay visible)
    state: Literal["ok", "failing", "idle"]  # how its newest attempt went; idle: none yet
    pending: int  # the backlog
    oldest_pending_at: dt.datetime | None
    sent: int
    dead: int
    dropped: int  # stale ones the dispatcher never sent, and dead letters an admin dropped
    last_sent_at: dt.datetime | None
    last_error: str | None  # of the newest attempt that failed (no patient data)
    last_error_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    destination: str
    content: Content
    study_id: int
    accession_number: str | None
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    closed_at: dt.datetime | None  # when it became a dead letter


@dataclass(frozen=True, slots=True)
class Changed:
    """A delivery after an admin's action."""

    id: int
    destination: str
    study_id: int
    status: DeliveryStatus
    attempts: int


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def destination_states(session: Session) -> list[DestinationState]:
    """Every configured destination, and every one no longer configured that has deliveries, by name."""
    def count(status: DeliveryStatus):
        return func.count(case((Delivery.status == status.value, 1)))

    totals = {row[0]: row[1:] for row in session.execute(
        select(Delivery.destination, count(DeliveryStatus.PENDING), count(DeliveryStatus.SENT),
               count(DeliveryStatus.DEAD), count(DeliveryStatus.DROPPED),
               func.min(case((Delivery.status == DeliveryStatus.PENDING.value, Delivery.created_at))),
               func.max(Delivery.sent_at))
        .group_by(Delivery.destination))}
    configured = {d.name: d for d in session.scalars(select(DeliveryDestination))}
    # The newest attempt per destination, and the newest failed one (the last error).
    newest = _newest_attempts(session, failed=False)
    failed = _newest_attempts(session, failed=True)
    states = []
    for name in sorted(set(totals) | {n for n, d in configured.items() if d.active}):
        pending, sent, dead, dropped, oldest, last_sent = totals.get(name, (0, 0, 0, 0, None, None))
        mirror = configured.get(name)
        attempt = newest.get(name)
        state = "idle" if attempt is None else "ok" if attempt.status == DeliveryStatus.SENT.value else "failing"
        error = failed.get(name)
        states.append(DestinationState(
            destination=name, kind=mirror.kind if mirror else None,
            receives=tuple(mirror.receives or ()) if mirror else (), active=bool(mirror and mirror.active),
            state=state, pending=pending, oldest_pending_at=_utc(oldest), sent=sent, dead=dead, dropped=dropped,
            last_sent_at=_utc(last_sent), last_error=error.last_error if error else None,
            last_error_at=_utc(error.last_attempt_at) if error else None))
    return states


def _newest_attempts(session: Session, *, failed: bool) -> dict[str, Delivery]:
    # A sent row keeps its success detail in last_error, a stale-dropped one its reason: neither failed.
    statuses = [DeliveryStatus.PENDING.value, DeliveryStatus.DEAD.value]
    if not failed:
        statuses.append(DeliveryStatus.SENT.value)
    attempted = Delivery.last_attempt_at.is_not(None) & Delivery.status.in_(statuses)
    if failed:
        attempted &= Delivery.last_error.is_not(None)
    latest = (select(Delivery.destination, func.max(Delivery.last_attempt_at).label("at"))
              .where(attempted).group_by(Delivery.destination).subquery())
    rows = session.scalars(
        select(Delivery).join(latest, (Delivery.destination == latest.c.destination)
                              & (Delivery.last_attempt_at == latest.c.at))
        .where(attempted).order_by(Delivery.id))
    return {row.destination: row for row in rows}  # ties at the same instant: the higher id wins


def dead_letters(session: Session, *, limit: int = 100) -> list[DeadLetter]:
    """The dead letters, newest first."""
    rows = session.execute(
        select(Delivery, Study.accession_number).join(Study, Study.id == Delivery.study_id)
        .where(Delivery.status == DeliveryStatus.DEAD.value)
        .order_by(Delivery.closed_at.desc(), Delivery.id.desc()).limit(limit)).all()
    return [DeadLetter(id=d.id, destination=d.destination, content=Content(d.content), study_id=d.study_id,
                       accession_number=accession, attempts=d.attempts, last_error=d.last_error,
                       created_at=as_utc(d.created_at), closed_at=_utc(d.closed_at))
            for d, accession in rows]


def _dead(session: Session, delivery_id: int) -> Delivery:
    # Locked on PostgreSQL, so a concurrent retry and drop cannot both win.
    row = session.scalar(select(Delivery).where(Delivery.id == delivery_id).with_for_update())
    if row is None:
        raise DeliveryNotFound(f"no delivery has id {delivery_id}")
    if row.status != DeliveryStatus.DEAD.value:
        raise NotDeadLetter(f"delivery {delivery_id} is {row.status}, not a dead letter")
    return row


def _changed(row: Delivery) -> Changed:
    return Changed(id=row.id, destination=row.destination, study_id=row.study_id, status=DeliveryStatus(row.status),
                   attempts=row.attempts)


def retry(session: Session, *, delivery_id: int, now: dt.datetime | None = None) -> Changed:
    """Send dead letter ``delivery_id`` again: pending, due now, attempts from zero. Its last
    error stays until the next attempt replaces it.

    Raises
    ------
    DeliveryNotFound, NotDeadLetter
    """
    row = _dead(session, delivery_id)
    row.status = DeliveryStatus.PENDING.value
    row.attempts = 0
    row.next_attempt_at = now or utcnow()
    row.closed_at = None
    session.flush()
    return _changed(row)


def drop(session: Session, *, delivery_id: int, now: dt.datetime | None = None) -> Changed:
    """Drop dead letter ``delivery_id``: it is never sent.

    Raises
    ------
    DeliveryNotFound, NotDeadLetter
    """
    row = _dead(session, delivery_id)
    row.status = DeliveryStatus.DROPPED.value
    row.closed_at = now or utcnow()
    session.flush()
    return _changed(row)

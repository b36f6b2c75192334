"""The transactional outbox: rows waiting to be handed to the broker."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import OutboxMessage, utcnow


@dataclasses.dataclass(frozen=True, slots=True)
class PendingMessage:
    id: int
    task: str
    study_id: int
    revision: int
    priority_rank: int


def pending(session: Session, *, limit: int = 100) -> list[PendingMessage]:
    """Unsent messages, most urgent first, then oldest."""
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.priority_rank.desc(), OutboxMessage.id)
        .limit(limit)
    ).all()
    return [PendingMessage(r.id, r.task, r.study_id, r.revision, r.priority_rank) for r in rows]


def mark_sent(session: Session, *, ids: list[int], now: dt.datetime | None = None) -> None:
    if ids:
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(sent_at=now or utcnow()))
    session.commit()


def count_pending(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None))) or 0

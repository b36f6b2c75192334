"""Waiting-time escalation, stored: raise the effective rank of unread studies that waited past
a boundary (``common.reading_order.Waits``), once per step, each step an event with its reason.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import EventStage, Priority, Waits
from common.delivery import Content
from db.deliveries import after_change
from db.models import Event, Study, utcnow


def escalate_due(session: Session, *, waits: Waits, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Raise every unread study whose wait crossed a boundary one step per boundary, writing
    one ESCALATED event per step (at most ``limit`` steps of each kind a call); how many steps.

    A study only ever moves from the class just below a boundary's, so a step is taken once:
    the next round finds it already there. Each step queues one escalation delivery per
    destination that receives escalations, in the same transaction.
    """
    now = now or utcnow()
    steps = 0
    for priority in (Priority.ROUTINE, Priority.URGENT):
        for boundary, higher in waits.boundaries(priority):
            below = higher.rank - 1
            due = session.scalars(
                select(Study)
                .where(Study.read_at.is_(None), Study.effective_rank == below,
                       Study.priority_rank == priority.rank, Study.received_at <= now - boundary)
                .order_by(Study.received_at, Study.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for study in due:
                study.effective_rank, study.escalated_from = higher.rank, priority.value
                session.add(Event(study_id=study.id, stage=EventStage.ESCALATED, created_at=now,
                                  detail=f"waited {_duration(boundary)}, {Priority.of_rank(below)} → {higher}"))
                after_change(session, study, previous_rank=below, rose=Content.ESCALATION, now=now)
            session.flush()  # the next boundary's query sees this step
            steps += len(due)
    session.commit()
    return steps


def _duration(wait: dt.timedelta) -> str:
    minutes = int(wait.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"

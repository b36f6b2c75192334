"""Reads for the operator's metrics: each study's stage times, and the oldest unread study's wait."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common import EventStage, Priority
from db.models import Event, Study, as_utc, utcnow


@dataclasses.dataclass(frozen=True, slots=True)
class StageTimes:
    """One COMPLETE or TRIAGED event with its study's timestamps (aware UTC)."""

    event_id: int
    study_id: int
    stage: EventStage
    first_image: dt.datetime
    last_image: dt.datetime
    completed: dt.datetime | None
    triaged: dt.datetime | None


def last_event_id(session: Session) -> int:
    """The newest event's id (0 when there is none): where a reader of new events starts."""
    return session.scalar(select(func.max(Event.id))) or 0


def stage_times_after(session: Session, *, after_event_id: int, limit: int = 1000) -> list[StageTimes]:
    """Studies completed or triaged since the event ``after_event_id``, oldest event first.

    The timestamps are the study's current ones: a study reopened again before it is read
    here reports its newer revision's (rare, and only shifts one observation).
    """
    rows = session.execute(
        select(Event.id, Event.study_id, Event.stage, Study.received_at, Study.last_instance_at,
               Study.completed_at, Study.triaged_at)
        .join(Study, Study.id == Event.study_id)
        .where(Event.id > after_event_id, Event.stage.in_([EventStage.COMPLETE, EventStage.TRIAGED]))
        .order_by(Event.id)
        .limit(limit)
    ).all()
    return [
        StageTimes(row.id, row.study_id, EventStage(row.stage), as_utc(row.received_at), as_utc(row.last_instance_at),
                   row.completed_at and as_utc(row.completed_at), row.triaged_at and as_utc(row.triaged_at))
        for row in rows
    ]


def oldest_unread_seconds(session: Session, *, now: dt.datetime | None = None) -> dict[Priority, float]:
    """Per effective priority, how long its oldest unread study has waited since its first
    image (0 where none waits): the figure a reading-time limit is held against."""
    now = now or utcnow()
    rows = session.execute(
        select(Study.effective_rank, func.min(Study.received_at)).where(Study.read_at.is_(None))
        .group_by(Study.effective_rank)
    ).all()
    oldest = {Priority.of_rank(rank): (now - as_utc(received)).total_seconds() for rank, received in rows}
    return {priority: max(0.0, oldest.get(priority, 0.0)) for priority in Priority}

"""The two reads behind the live event stream: events after an id (with their study's UID),
and the newest id. Both by primary key, on read-only sessions, so a stream never holds
SQLite's write lock."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Event, Study, as_utc


@dataclasses.dataclass(frozen=True, slots=True)
class FeedEvent:
    """One change: which study, which stage of its history, when (no patient data, no names)."""

    id: int
    study_instance_uid: str
    stage: str
    at: dt.datetime


# (after_id, limit) → events with a larger id, oldest first; and → the largest id so far.
ReadAfter = Callable[[int, int], list[FeedEvent]]
ReadLast = Callable[[], int]


def database_reads(reads: sessionmaker[Session]) -> tuple[ReadAfter, ReadLast]:
    """The feed's two reads on the events table, by primary key (read-only sessions)."""

    def read_after(after_id: int, limit: int) -> list[FeedEvent]:
        with reads() as session:
            rows = session.execute(
                select(Event.id, Study.study_instance_uid, Event.stage, Event.created_at)
                .join(Study, Study.id == Event.study_id)
                .where(Event.id > after_id).order_by(Event.id).limit(limit)
            ).all()
        return [FeedEvent(i, uid, stage, as_utc(at)) for i, uid, stage, at in rows]

    def read_last() -> int:
        with reads() as session:
            return session.scalar(select(func.max(Event.id))) or 0

    return read_after, read_last

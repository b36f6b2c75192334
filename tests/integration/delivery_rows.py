"""Delivery rows for the operator-view tests, as the dispatcher leaves them."""

from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select

from common import Priority
from common.delivery import Content, DeliveryStatus
from db.models import Delivery, Study

_ids = itertools.count(1)


def delivery(sessions, study_uid: str, destination: str, status: DeliveryStatus, *, created: dt.datetime,
             content: Content = Content.PRIORITY, attempts: int = 0, attempted: dt.datetime | None = None,
             error: str | None = None, sent: dt.datetime | None = None, closed: dt.datetime | None = None) -> int:
    """One outbox row as the dispatcher leaves it."""
    n = next(_ids)
    with sessions.begin() as session:
        study_id = session.scalar(select(Study.id).where(Study.study_instance_uid == study_uid))
        row = Delivery(destination=destination, study_id=study_id, revision=1, seq=n, content=content.value,
                       status=status.value, priority_rank=Priority.STAT.rank, payload={}, control_id=f"rt-{n:08d}",
                       attempts=attempts, next_attempt_at=created, last_attempt_at=attempted, last_error=error,
                       created_at=created, sent_at=sent, closed_at=closed)
        session.add(row)
        session.flush()
        return row.id

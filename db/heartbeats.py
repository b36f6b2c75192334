"""Worker heartbeats: each worker process says it is alive; /healthz reads them."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import WorkerHeartbeat, as_utc, utcnow


def beat(session: Session, *, name: str, queues: str, now: dt.datetime | None = None) -> None:
    row = session.get(WorkerHeartbeat, name)
    if row is None:
        session.add(WorkerHeartbeat(name=name, queues=queues, last_seen=now or utcnow()))
    else:
        row.queues, row.last_seen = queues, now or utcnow()
    session.commit()


def forget(session: Session, *, name: str) -> None:
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))
    session.commit()


def fresh_names(session: Session, *, within_seconds: float, now: dt.datetime | None = None) -> set[str]:
    """Names of the workers seen within ``within_seconds``."""
    since = (now or utcnow()) - dt.timedelta(seconds=within_seconds)
    return {name for name, seen in session.execute(select(WorkerHeartbeat.name, WorkerHeartbeat.last_seen))
            if as_utc(seen) >= since}



def alive_by_queue(session: Session, *, within_seconds: float, now: dt.datetime | None = None) -> dict[str, int]:
    """How many workers consuming each queue were seen within ``within_seconds``."""
    since = (now or utcnow()) - dt.timedelta(seconds=within_seconds)
    counts: dict[str, int] = {}
    for queues, last_seen in session.execute(select(WorkerHeartbeat.queues, WorkerHeartbeat.last_seen)):
        if as_utc(last_seen) >= since:
            for queue in queues.split(","):
                counts[queue] = counts.get(queue, 0) + 1
    return counts

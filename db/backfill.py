"""Database side of ``radtriage backfill``: finish the studies a backfill touched."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from common import CompletedBy, EventStage, StudyStatus
from db.assembly import complete_study
from db.models import Event, Study, utcnow


def complete_for_backfill(session: Session, *, study_ids: list[int], alive: set[str] | None = None,
                          now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """Complete the given studies still receiving, without queueing them on the broker
    (the backfill triages them itself).

    With ``alive`` (the worker names that beat), a study left triaging by any other claimer,
    e.g. a backfill that was interrupted, is queued again and returned with the others.

    Returns
    -------
    list of (int, int)
        (study id, revision) of every one of them now waiting for triage, including those a
        previous, interrupted backfill left queued.
    """
    now = now or utcnow()
    waiting = []
    studies = session.scalars(select(Study).where(Study.id.in_(study_ids)).order_by(Study.id).with_for_update())
    for study in studies:
        if study.status == StudyStatus.RECEIVING:
            complete_study(session, study, completed_by=CompletedBy.BACKFILL, now=now, queue_triage=False)
        if alive is not None and study.status == StudyStatus.TRIAGING and study.claimed_by not in alive:
            study.move_to(StudyStatus.QUEUED, now)
            session.add(Event(study_id=study.id, stage=EventStage.RETRY, detail="its claimer stopped beating"))
        if study.status == StudyStatus.QUEUED:
            waiting.append((study.id, study.revision))
    session.commit()
    return waiting


def final_states(session: Session, *, study_ids: list[int]) -> dict[int, tuple[str, float | None, list[str]]]:
    """Study id → (status, urgency score, reasons)."""
    rows = session.execute(select(Study.id, Study.status, Study.urgency_score, Study.reasons).where(Study.id.in_(study_ids)))
    return {row.id: (row.status, row.urgency_score, list(row.reasons or [])) for row in rows}


def relax_sqlite_sync(sessions: sessionmaker[Session]) -> None:
    """Commit the backfill's own SQLite transactions without waiting for fsync (WAL, synchronous=NORMAL).

    A backfill is resumable, so a commit a power cut loses is simply made again by the next run
    (its files are still fsynced before their rows, so no row can name a torn file). The
    daemon's connections keep synchronous=FULL. Call before the first session; PostgreSQL is
    left alone.
    """
    engine = sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _synchronous_normal)


def _synchronous_normal(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")

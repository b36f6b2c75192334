"""Database side of ``radtriage backfill``: finish the studies a backfill touched."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import CompletedBy, StudyStatus
from db.assembly import complete_study
from db.models import Study, utcnow


def complete_for_backfill(session: Session, *, study_ids: list[int],
                          now: dt.datetime | None = None) -> list[tuple[int, int]]:
    """Complete the given studies still receiving, without queueing them on the broker
    (the backfill triages them itself).

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
        if study.status == StudyStatus.QUEUED:
            waiting.append((study.id, study.revision))
    session.commit()
    return waiting


def final_states(session: Session, *, study_ids: list[int]) -> dict[int, tuple[str, float | None, list[str]]]:
    """Study id → (status, urgency score, reasons)."""
    rows = session.execute(select(Study.id, Study.status, Study.urgency_score, Study.reasons).where(Study.id.in_(study_ids)))
    return {row.id: (row.status, row.urgency_score, list(row.reasons or [])) for row in rows}

"""Study completeness: a study nobody has added to for the quiet time is complete."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, OutboxMessage, Study, StudyStatus, utcnow

TRIAGE_TASK = "triage"


def complete_quiet_studies(session: Session, *, stable_seconds: float, now: dt.datetime | None = None) -> list[int]:
    """Mark every receiving study quiet for ``stable_seconds`` complete and queue its triage.

    The state change and the outbox row commit together, so a crash loses neither.
    Returns the ids of the studies completed.
    """
    now = now or utcnow()
    quiet_before = now - dt.timedelta(seconds=stable_seconds)
    studies = session.scalars(
        select(Study)
        .where(Study.status == StudyStatus.RECEIVING, Study.last_instance_at <= quiet_before)
        .order_by(Study.priority_rank.desc(), Study.id)
        .with_for_update(skip_locked=True)
    ).all()
    for study in studies:
        study.move_to(StudyStatus.QUEUED, now)
        study.completed_at = now
        session.add(
            OutboxMessage(
                task=TRIAGE_TASK, study_id=study.id, revision=study.revision, priority_rank=study.priority_rank
            )
        )
        session.add(Event(study_id=study.id, stage="complete", detail=f"revision {study.revision}, quiet timer"))
    session.commit()
    return [study.id for study in studies]

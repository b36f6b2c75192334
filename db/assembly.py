"""Study completeness: complete by its views after a short grace, else after the quiet time.

The view rule itself (a frontal view and the expected count) is decided per instance by
``dicom.completeness`` and kept on the study row by ``db.ingest``; this module only asks
which receiving studies are due.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from common import EventStage, Queue, StudyStatus
from db.models import Event, OutboxMessage, Study, as_utc, utcnow


def complete_quiet_studies(session: Session, *, stable_seconds: float, grace_seconds: float | None = None,
                           now: dt.datetime | None = None) -> list[int]:
    """Complete every receiving study that is due and queue its triage.

    A study is due when nothing arrived for ``stable_seconds`` (the quiet timer), or, when
    its views are complete, for ``grace_seconds`` (None: the view rule is off). The state
    change and the outbox row commit together, so a crash loses neither.

    Returns
    -------
    list of int
        The ids of the studies completed.
    """
    now = now or utcnow()
    quiet_before = now - dt.timedelta(seconds=stable_seconds)
    due = Study.last_instance_at <= quiet_before
    if grace_seconds is not None:
        grace_before = now - dt.timedelta(seconds=grace_seconds)
        due = or_(due, and_(Study.views_complete.is_(True), Study.last_instance_at <= grace_before))
    studies = session.scalars(
        select(Study)
        .where(Study.status == StudyStatus.RECEIVING, due)
        .order_by(Study.priority_rank.desc(), Study.id)
        .with_for_update(skip_locked=True)
    ).all()
    for study in studies:
        rule = "quiet timer" if as_utc(study.last_instance_at) <= quiet_before else "views complete"
        study.move_to(StudyStatus.QUEUED, now)
        study.completed_at = now
        session.add(
            OutboxMessage(
                task=Queue.TRIAGE, study_id=study.id, revision=study.revision, priority_rank=study.priority_rank
            )
        )
        session.add(Event(study_id=study.id, stage=EventStage.COMPLETE, detail=f"revision {study.revision}, {rule}"))
    session.commit()
    return [study.id for study in studies]


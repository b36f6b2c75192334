"""Completing studies: move each receiving study the completion rule makes due to QUEUED.

The rule is ``common.completion``'s; ``db.ingest`` keeps each study's view state on its row,
and this module selects what the rule's cut-offs make due and records the change.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from common import CompletedBy, CompletionRule, EventStage, Queue, StudyStatus
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
    cutoffs = CompletionRule(stable_seconds, grace_seconds).cutoffs(now)
    # The same cut-offs in SQL, so only due rows are locked; ``Cutoffs.due`` then names the rule.
    due = Study.last_instance_at <= cutoffs.quiet_before
    if cutoffs.grace_before is not None:
        due = or_(due, and_(Study.views_complete.is_(True), Study.last_instance_at <= cutoffs.grace_before))
    studies = session.scalars(
        select(Study)
        .where(Study.status == StudyStatus.RECEIVING, due)
        .order_by(Study.priority_rank.desc(), Study.id)
        .with_for_update(skip_locked=True)
    ).all()
    completed = []
    for study in studies:
        completed_by = cutoffs.due(as_utc(study.last_instance_at), views_complete=bool(study.views_complete))
        if completed_by is not None:
            complete_study(session, study, completed_by=completed_by, now=now)
            completed.append(study.id)
    session.commit()
    return completed


def complete_study(session: Session, study: Study, *, completed_by: CompletedBy, now: dt.datetime,
                   queue_triage: bool = True) -> None:
    """Move a receiving ``study`` to QUEUED and record why, in the caller's transaction.

    ``queue_triage`` adds the outbox row that hands the study to the broker; a backfill,
    which triages its studies itself, leaves it out.
    """
    study.move_to(StudyStatus.QUEUED, now)
    study.completed_at = now
    if queue_triage:
        session.add(
            OutboxMessage(
                task=Queue.TRIAGE, study_id=study.id, revision=study.revision, priority_rank=study.priority_rank
            )
        )
    session.add(Event(study_id=study.id, stage=EventStage.COMPLETE, detail=f"revision {study.revision}, {completed_by}"))

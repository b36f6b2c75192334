"""The radiologists' worklist: most urgent first, then highest urgency score, then oldest.

Nothing starves: a study that has waited long is escalated one priority step per wait
(ROUTINE → URGENT after ``routine_after``, → STAT after a further ``urgent_after``). The
escalation is computed when the worklist is read, so it never overwrites what was ordered
or what the AI said.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session

from common import DraftStatus, Priority, StudyStatus
from db.drafts import DraftView
from db.models import Draft, Instance, Study, as_utc, utcnow


@dataclasses.dataclass(frozen=True, slots=True)
class Escalation:
    """Waits after which a study moves up one step; None switches that step off."""

    routine_after: dt.timedelta | None = dt.timedelta(minutes=120)
    urgent_after: dt.timedelta | None = dt.timedelta(minutes=60)
    window: dt.timedelta | None = None  # only studies received within it are listed


def _effective_rank(escalation: Escalation, now: dt.datetime):
    """SQL for the priority rank after waiting-time escalation."""
    routine, urgent, stat = (p.rank for p in (Priority.ROUTINE, Priority.URGENT, Priority.STAT))
    whens = []
    r, u = escalation.routine_after, escalation.urgent_after
    if r is not None and u is not None:
        whens.append((and_(Study.priority_rank == routine, Study.received_at <= now - r - u), stat))
    if r is not None:
        whens.append((and_(Study.priority_rank == routine, Study.received_at <= now - r), urgent))
    if u is not None:
        whens.append((and_(Study.priority_rank == urgent, Study.received_at <= now - u), stat))
    return case(*whens, else_=Study.priority_rank) if whens else Study.priority_rank


@dataclasses.dataclass(frozen=True, slots=True)
class WorklistRow:
    """One study on the worklist, waiting-time escalation applied; times are aware UTC."""

    study_instance_uid: str
    accession_number: str | None
    priority: Priority  # after escalation
    escalated: bool
    ordered_priority: Priority
    urgency_score: float | None
    status: StudyStatus
    reasons: tuple[str, ...]
    revision: int
    instances: int
    received_at: dt.datetime
    completed_at: dt.datetime | None
    triaged_at: dt.datetime | None
    draft_status: DraftStatus | None
    draft: DraftView | None  # the newest revision's


def worklist(
    session: Session, *, limit: int = 1000, escalation: Escalation = Escalation(), now: dt.datetime | None = None
) -> list[WorklistRow]:
    """Worklist rows in reading order, waiting-time escalation applied."""
    now = now or utcnow()
    effective = _effective_rank(escalation, now).label("effective_rank")
    counts = (
        select(Instance.study_id, func.count(Instance.id).label("n"))
        .group_by(Instance.study_id)
        .subquery()
    )
    rows = session.execute(
        select(Study, counts.c.n, effective)
        .outerjoin(counts, counts.c.study_id == Study.id)
        .where(Study.received_at >= now - escalation.window if escalation.window else true())
        .order_by(
            effective.desc(),
            Study.urgency_score.desc().nulls_last(),
            Study.received_at,
            Study.id,
        )
        .limit(limit)
    ).all()
    drafts = _latest_drafts(session, [study.id for study, _, _ in rows])
    return [_row(study, n or 0, rank, drafts.get(study.id)) for study, n, rank in rows]


def _latest_drafts(session: Session, study_ids: list[int]) -> dict[int, DraftView]:
    latest: dict[int, DraftView] = {}
    for draft in session.scalars(select(Draft).where(Draft.study_id.in_(study_ids)).order_by(Draft.revision)):
        latest[draft.study_id] = DraftView.of(draft)  # ascending: the newest revision wins
    return latest


def _row(study: Study, instance_count: int, effective_rank: int, draft: DraftView | None) -> WorklistRow:
    escalated = effective_rank > study.priority_rank
    reasons = list(study.reasons or [])
    if escalated:
        reasons.append(f"escalated from {study.priority}: long wait")
    return WorklistRow(
        study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number,
        priority=Priority.of_rank(effective_rank),
        escalated=escalated,
        ordered_priority=Priority(study.ordered_priority),
        urgency_score=study.urgency_score,
        status=StudyStatus(study.status),
        reasons=tuple(reasons),
        revision=study.revision,
        instances=instance_count,
        received_at=as_utc(study.received_at),
        completed_at=_utc(study.completed_at),
        triaged_at=_utc(study.triaged_at),
        draft_status=None if study.draft_status is None else DraftStatus(study.draft_status),
        draft=draft,
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def status_counts(session: Session) -> dict[str, int]:
    """How many studies are in each status (for metrics)."""
    return dict(session.execute(select(Study.status, func.count()).group_by(Study.status)).all())


def queue_depths(session: Session) -> dict[str, int]:
    """Studies waiting for a worker, per queue (the database is the queue of record)."""
    triage = session.scalar(select(func.count()).select_from(Study).where(Study.status == StudyStatus.QUEUED)) or 0
    draft = session.scalar(
        select(func.count()).select_from(Study).where(Study.draft_status == DraftStatus.QUEUED)
    ) or 0
    return {"triage": triage, "draft": draft}

"""The radiologists' worklist: most urgent first, then highest urgency score, then oldest.

Nothing starves: a study that has waited long is escalated one priority step per wait
(ROUTINE → URGENT after ``routine_after``, → STAT after a further ``urgent_after``). The
escalation is computed when the worklist is read, so it never overwrites what was ordered
or what the AI said.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, select, true
from sqlalchemy.orm import Session

from common import DraftStatus, Priority, StudyStatus
from db.drafts import as_item
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


def worklist(
    session: Session, *, limit: int = 1000, escalation: Escalation = Escalation(), now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Worklist items in reading order, waiting-time escalation applied."""
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
    return [_item(study, n or 0, rank, drafts.get(study.id)) for study, n, rank in rows]


def _latest_drafts(session: Session, study_ids: list[int]) -> dict[int, dict[str, Any]]:
    latest: dict[int, dict[str, Any]] = {}
    for draft in session.scalars(select(Draft).where(Draft.study_id.in_(study_ids)).order_by(Draft.revision)):
        latest[draft.study_id] = as_item(draft)  # ascending: the newest revision wins
    return latest


def _item(study: Study, instance_count: int, effective_rank: int, draft: dict[str, Any] | None) -> dict[str, Any]:
    escalated = effective_rank > study.priority_rank
    reasons = list(study.reasons or [])
    if escalated:
        reasons.append(f"escalated from {study.priority}: long wait")
    return {
        "study_instance_uid": study.study_instance_uid,
        "accession_number": study.accession_number,
        "priority": Priority.of_rank(effective_rank).value,
        "escalated": escalated,
        "ordered_priority": study.ordered_priority,
        "urgency_score": study.urgency_score,
        "status": study.status,
        "reasons": reasons,
        "revision": study.revision,
        "instances": instance_count,
        "received_at": _iso(study.received_at),
        "completed_at": _iso(study.completed_at),
        "triaged_at": _iso(study.triaged_at),
        "draft_status": study.draft_status,
        "draft": draft,
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; every stored time is UTC.
    return as_utc(value).isoformat()


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

"""The radiologists' worklist: most urgent first, then highest urgency score, then oldest."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import DraftStatus, Instance, Study, StudyStatus


def worklist(session: Session, *, limit: int = 1000) -> list[dict[str, Any]]:
    """Worklist items in reading order."""
    counts = (
        select(Instance.study_id, func.count(Instance.id).label("n"))
        .group_by(Instance.study_id)
        .subquery()
    )
    rows = session.execute(
        select(Study, counts.c.n)
        .outerjoin(counts, counts.c.study_id == Study.id)
        .order_by(
            Study.priority_rank.desc(),
            Study.urgency_score.desc().nulls_last(),
            Study.received_at,
            Study.id,
        )
        .limit(limit)
    ).all()
    return [_item(study, n or 0) for study, n in rows]


def _item(study: Study, instance_count: int) -> dict[str, Any]:
    return {
        "study_instance_uid": study.study_instance_uid,
        "accession_number": study.accession_number,
        "priority": study.priority,
        "ordered_priority": study.ordered_priority,
        "urgency_score": study.urgency_score,
        "status": study.status,
        "reasons": list(study.reasons or []),
        "revision": study.revision,
        "instances": instance_count,
        "received_at": _iso(study.received_at),
        "completed_at": _iso(study.completed_at),
        "triaged_at": _iso(study.triaged_at),
    }


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; every stored time is UTC.
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()


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

"""Draft reports waiting to be sent to the PACS as DICOM SR, with their retry schedule."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import EventStage, ExportStatus
from db.models import Draft, Event, Study, utcnow
from db.scores import scores_at
from db.triage import instance_infos


@dataclasses.dataclass(frozen=True, slots=True)
class ExportJob:
    draft_id: int
    study_instance_uid: str
    priority: str
    urgency_score: float | None
    finding_scores: tuple  # db.scores.FindingScore: score, kind, threshold per finding
    source_paths: tuple[str, ...]
    model_id: str
    model_version: str
    prompt_version: str
    findings: str
    impression: str
    attempts: int


def due(session: Session, *, limit: int = 20, now: dt.datetime | None = None) -> list[ExportJob]:
    """Pending exports whose next attempt is due, most urgent study first."""
    now = now or utcnow()
    rows = session.execute(
        select(Draft, Study)
        .join(Study, Study.id == Draft.study_id)
        .where(Draft.sr_status == ExportStatus.PENDING, (Draft.sr_next_attempt_at.is_(None)) | (Draft.sr_next_attempt_at <= now))
        .order_by(Study.priority_rank.desc(), Draft.id)
        .limit(limit)
    ).all()
    return [
        ExportJob(
            draft.id, study.study_instance_uid, study.priority, study.urgency_score, scores_at(session, {study.id: draft.revision}).get(study.id, ()),
            tuple(i.path for i in instance_infos(study)), draft.model_id, draft.model_version,
            draft.prompt_version, draft.findings, draft.impression, draft.sr_attempts,
        )
        for draft, study in rows
    ]


_STAGES = {ExportStatus.PENDING: EventStage.SR_PENDING, ExportStatus.SENT: EventStage.SR_SENT,
           ExportStatus.FAILED: EventStage.SR_FAILED}


def mark(session: Session, *, draft_id: int, status: ExportStatus, detail: str,
         retry_at: dt.datetime | None = None) -> None:
    """Record an attempt: ``SENT``, ``FAILED`` (final) or ``PENDING`` again at ``retry_at``."""
    status = ExportStatus(status)
    draft = session.get(Draft, draft_id)
    draft.sr_status = status
    draft.sr_attempts += 1
    draft.sr_next_attempt_at = retry_at
    session.add(Event(study_id=draft.study_id, stage=_STAGES[status], detail=detail))
    session.commit()

"""A draft as the DICOM SR destinations send it, and the draft's SR state (shown with the draft)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import EventStage, ExportStatus
from db.models import Draft, Event, Study
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


def latest_draft_job(session: Session, *, study_id: int) -> ExportJob | None:
    """The SR of the study's newest draft, to send to a DICOM SR destination; None without a draft."""
    row = session.execute(select(Draft, Study).join(Study, Study.id == Draft.study_id)
                          .where(Draft.study_id == study_id).order_by(Draft.id.desc()).limit(1)).first()
    return None if row is None else _job(session, *row)


def _job(session: Session, draft: Draft, study: Study) -> ExportJob:
    return ExportJob(
        draft.id, study.study_instance_uid, study.priority, study.urgency_score,
        scores_at(session, {study.id: draft.revision}).get(study.id, ()),
        tuple(i.path for i in instance_infos(study)), draft.model_id, draft.model_version,
        draft.prompt_version, draft.findings, draft.impression, draft.sr_attempts,
    )


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

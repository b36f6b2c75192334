"""The draft queue in the database: the most urgent waiting study is always drafted next.

Brokers only carry wake-up tokens; which studies a draft worker takes is decided here, so
urgency order holds on the embedded broker (no priorities) as well as on Redis.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import DraftStatus, EventStage, ExportStatus, Priority, StudyStatus
from common.delivery import Content
from db.deliveries import after_change
from db.models import Draft, Event, Study, utcnow
from db.scores import finding_scores
from db.triage import InstanceInfo, instance_infos


@dataclasses.dataclass(frozen=True, slots=True)
class DraftJob:
    study_id: int
    revision: int
    priority: str
    urgency_score: float | None
    instances: tuple[InstanceInfo, ...]
    finding_scores: dict[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class DraftRecord:
    model_id: str
    model_version: str
    prompt_version: str
    disclaimer: str
    findings: str
    impression: str
    raw_text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    batch_size: int


def claim_batch(session: Session, *, limit: int, worker: str, now: dt.datetime | None = None) -> list[DraftJob]:
    """Take up to ``limit`` waiting studies, STAT before URGENT before ROUTINE, then oldest."""
    now = now or utcnow()
    studies = session.scalars(
        select(Study)
        # Only a triaged study: a reopened one gets its draft after its new triage.
        .where(Study.draft_status == DraftStatus.QUEUED, Study.status == StudyStatus.TRIAGED)
        .order_by(Study.priority_rank.desc(), Study.completed_at, Study.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    jobs = []
    for study in studies:
        study.move_draft_to(DraftStatus.DRAFTING, now)
        study.draft_claimed_by = worker
        session.add(Event(study_id=study.id, stage=EventStage.DRAFTING, detail=f"revision {study.revision}"))
        jobs.append(DraftJob(study.id, study.revision, study.priority, study.urgency_score,
                             instance_infos(study), study_scores(session, study)))
    session.commit()
    return jobs


def study_scores(session: Session, study: Study) -> dict[str, float]:
    """The study's finding scores at its current revision, highest over its images."""
    return {f.name: f.score for f in finding_scores(session, [study]).get(study.id, ())}


def record_draft(session: Session, *, study_id: int, revision: int, draft: DraftRecord,
                 export: bool, escalation: tuple[str, list[str]] | None = None) -> bool:
    """Store the draft (and, with ``export``, queue its SR for the PACS); False when stale.

    ``escalation`` is ``(priority, reasons)`` when the policy lets a draft raise the priority.
    The deliveries it reports (the priority if it rose, the draft) are queued in the same transaction.
    """
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None or study.revision != revision or study.draft_status != DraftStatus.DRAFTING:
        session.rollback()
        return False
    stored = Draft(study_id=study_id, revision=revision, **dataclasses.asdict(draft),
                   sr_status=ExportStatus.PENDING if export else None)
    session.add(stored)
    previous_rank = study.effective_rank
    if escalation is not None:
        raised = Priority.most_urgent(study.priority, escalation[0])
        if raised.value != study.priority:
            study.set_priority(raised)
            study.reasons = list(study.reasons or []) + list(escalation[1])
    study.move_draft_to(DraftStatus.DRAFTED)
    session.add(Event(study_id=study_id, stage=EventStage.DRAFTED, detail=f"revision {revision}"))
    session.flush()  # the draft's id names its SR, whichever destination sends it
    after_change(session, study, previous_rank=previous_rank, rose=Content.PRIORITY, report=Content.DRAFT,
                 draft={"id": stored.id, "findings": draft.findings, "impression": draft.impression,
                        "model_id": draft.model_id, "model_version": draft.model_version,
                        "prompt_version": draft.prompt_version, "disclaimer": draft.disclaimer})
    session.commit()
    return True


def release(session: Session, *, study_ids: list[int]) -> None:
    """Put claimed studies back in the draft queue (the batch failed transiently)."""
    for study in session.scalars(select(Study).where(Study.id.in_(study_ids)).with_for_update()):
        if study.draft_status == DraftStatus.DRAFTING:
            study.move_draft_to(DraftStatus.QUEUED)
    session.commit()


def record_draft_failure(session: Session, *, study_id: int, revision: int, reason: str) -> None:
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is not None and study.revision == revision and study.draft_status == DraftStatus.DRAFTING:
        study.move_draft_to(DraftStatus.FAILED)
        session.add(Event(study_id=study_id, stage=EventStage.DRAFT_FAILED, detail=reason))
    session.commit()


@dataclasses.dataclass(frozen=True, slots=True)
class DraftView:
    """A study's draft as the worklist shows it, disclaimer first."""

    disclaimer: str
    findings: str
    impression: str
    model_id: str
    prompt_version: str
    revision: int
    sr_status: ExportStatus | None  # None: no SR destination

    @classmethod
    def of(cls, draft: Draft) -> DraftView:
        return cls(draft.disclaimer, draft.findings, draft.impression, draft.model_id, draft.prompt_version,
                   draft.revision, None if draft.sr_status is None else ExportStatus(draft.sr_status))

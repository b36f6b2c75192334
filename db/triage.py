"""Claiming a study for triage and recording the result, once per study revision."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import DraftStatus, EventStage, Priority, Queue, StudyStatus
from common.delivery import Content
from db.deliveries import after_change
from db.models import Event, OutboxMessage, Score, Study, utcnow


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceInfo:
    id: int
    sop_instance_uid: str
    path: str
    sop_class_uid: str
    modality: str | None
    body_part: str | None
    view_position: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class StudyForTriage:
    id: int
    revision: int
    ordered_priority: Priority
    instances: tuple[InstanceInfo, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ScoreRecord:
    model: str
    instance_id: int | None
    findings: dict[str, Any]
    embedding: bytes | None = None
    criteria: dict[str, Any] | None = None  # see Score.criteria


def instance_infos(study: Study) -> tuple[InstanceInfo, ...]:
    """The study's instances, the newest revision of each SOP instance only (none whose file
    retention purged: a study reopened long after has only its new images to score)."""
    newest = {i.sop_instance_uid: i for i in sorted(study.instances, key=lambda i: i.id) if i.purged_at is None}
    return tuple(
        InstanceInfo(i.id, i.sop_instance_uid, i.path, i.sop_class_uid, i.modality, i.body_part, i.view_position)
        for i in sorted(newest.values(), key=lambda i: i.id)
    )


def _locked(session: Session, study_id: int, revision: int, *statuses: str) -> Study | None:
    """The study row, locked, if it is at ``revision`` in one of ``statuses``; else None."""
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None or study.revision != revision or study.status not in statuses:
        session.rollback()
        return None
    return study


def claim(
    session: Session, *, study_id: int, revision: int, worker: str, max_attempts: int | None = None
) -> StudyForTriage | None:
    """Move a queued study to ``triaging``; ``None`` when this delivery is stale or a duplicate.

    Only a queued study can be claimed, so a second delivery of the same task while the
    first still runs does nothing; a study left ``triaging`` by a dead worker is put back
    in the queue by the reconciliation sweep. A study already tried ``max_attempts`` times
    (its worker died each time) is failed instead, so it cannot crash workers forever.
    """
    study = _locked(session, study_id, revision, StudyStatus.QUEUED)
    if study is None:
        return None
    if max_attempts is not None and study.attempts >= max_attempts:
        reason = f"gave up after {study.attempts} attempts"
        study.move_to(StudyStatus.FAILED)
        study.reasons = [f"triage failed: {reason}"]
        session.add(Event(study_id=study.id, stage=EventStage.FAILED, detail=reason))
        session.commit()
        return None
    study.move_to(StudyStatus.TRIAGING)
    study.claimed_by = worker
    study.attempts += 1
    session.add(Event(study_id=study.id, stage=EventStage.TRIAGING, detail=f"revision {revision}, attempt {study.attempts}"))
    snapshot = StudyForTriage(
        study.id, study.revision, Priority(study.ordered_priority), instance_infos(study)
    )
    session.commit()
    return snapshot


def release(session: Session, *, study_id: int, revision: int, worker: str, reason: str) -> bool:
    """Put a study this ``worker`` claimed back in the queue after a transient error (the task
    retries); a claim another worker has taken over meanwhile is left alone."""
    study = _locked(session, study_id, revision, StudyStatus.TRIAGING)
    if study is None or study.claimed_by != worker:
        session.rollback()
        return False
    study.move_to(StudyStatus.QUEUED)
    session.add(Event(study_id=study.id, stage=EventStage.RETRY, detail=reason))
    session.commit()
    return True


def record_result(
    session: Session,
    *,
    study_id: int,
    revision: int,
    priority: Priority,
    urgency_score: float | None,
    reasons: list[str],
    scores: list[ScoreRecord],
    draft: bool = False,
    now: dt.datetime | None = None,
) -> bool:
    """Commit a triage result; returns False (writing nothing) when the revision is stale.

    With ``draft`` the study is queued for a MedGemma draft in the same transaction; so are
    the deliveries it reports (the priority if it rose, the result) to each destination.
    """
    study = _locked(session, study_id, revision, StudyStatus.TRIAGING)
    if study is None:
        return False
    now = now or utcnow()
    previous_rank = study.effective_rank
    # The order is the floor whatever the caller computed.
    final = study.set_priority(Priority.most_urgent(study.ordered_priority, priority))
    study.urgency_score = urgency_score
    study.reasons = list(reasons)
    study.move_to(StudyStatus.TRIAGED, now)
    study.triaged_at = now
    for score in scores:
        session.add(
            Score(
                study_id=study.id,
                revision=revision,
                model=score.model,
                instance_id=score.instance_id,
                findings=score.findings,
                criteria=score.criteria,
                embedding=score.embedding,
            )
        )
    if draft:
        study.move_draft_to(DraftStatus.QUEUED, now)
        session.add(OutboxMessage(task=Queue.DRAFT, study_id=study.id, revision=revision, priority_rank=final.rank))
    else:
        study.move_draft_to(DraftStatus.DISABLED, now)
    session.add(Event(study_id=study.id, stage=EventStage.TRIAGED, detail=f"revision {revision}, {final.value}"))
    after_change(session, study, previous_rank=previous_rank, rose=Content.PRIORITY, report=Content.RESULT, now=now)
    session.commit()
    return True


def record_failure(session: Session, *, study_id: int, revision: int, reason: str) -> bool:
    """Mark the study failed; it stays on the worklist at its ordered priority."""
    study = _locked(session, study_id, revision, StudyStatus.QUEUED, StudyStatus.TRIAGING)
    if study is None:
        return False
    study.move_to(StudyStatus.FAILED)
    study.reasons = [f"triage failed: {reason}"]
    session.add(Event(study_id=study.id, stage=EventStage.FAILED, detail=reason))
    session.commit()
    return True

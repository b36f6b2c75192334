"""Claiming a study for triage and recording the result, once per study revision."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Event, Score, Study, StudyStatus, utcnow
from scoring.priority import Priority

_CLAIMABLE = (StudyStatus.QUEUED, StudyStatus.TRIAGING)


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceInfo:
    id: int
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


def claim(session: Session, *, study_id: int, revision: int) -> StudyForTriage | None:
    """Mark the study as being triaged; ``None`` when this task is stale or a duplicate.

    A study left ``triaging`` by a worker that died is claimed again.
    """
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None or study.revision != revision or study.status not in _CLAIMABLE:
        session.rollback()
        return None
    study.status = StudyStatus.TRIAGING
    session.add(Event(study_id=study.id, stage="triaging", detail=f"revision {revision}"))
    instances = tuple(
        InstanceInfo(i.id, i.path, i.sop_class_uid, i.modality, i.body_part, i.view_position) for i in study.instances
    )
    snapshot = StudyForTriage(study.id, study.revision, Priority(study.ordered_priority), instances)
    session.commit()
    return snapshot


def record_result(
    session: Session,
    *,
    study_id: int,
    revision: int,
    priority: Priority,
    urgency_score: float | None,
    reasons: list[str],
    scores: list[ScoreRecord],
    now: dt.datetime | None = None,
) -> bool:
    """Commit a triage result; returns False (writing nothing) when the revision is stale."""
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None or study.revision != revision or study.status not in _CLAIMABLE:
        session.rollback()
        return False
    # The order is the floor whatever the caller computed.
    final = Priority.most_urgent(study.ordered_priority, priority)
    study.priority, study.priority_rank = final.value, final.rank
    study.urgency_score = urgency_score
    study.reasons = list(reasons)
    study.status = StudyStatus.TRIAGED
    study.triaged_at = now or utcnow()
    for score in scores:
        session.add(
            Score(
                study_id=study.id,
                revision=revision,
                model=score.model,
                instance_id=score.instance_id,
                findings=score.findings,
                embedding=score.embedding,
            )
        )
    session.add(Event(study_id=study.id, stage="triaged", detail=f"revision {revision}, {final.value}"))
    session.commit()
    return True


def record_failure(session: Session, *, study_id: int, revision: int, reason: str) -> bool:
    """Mark the study failed; it stays on the worklist at its ordered priority."""
    study = session.scalar(select(Study).where(Study.id == study_id).with_for_update())
    if study is None or study.revision != revision or study.status not in _CLAIMABLE:
        session.rollback()
        return False
    study.status = StudyStatus.FAILED
    study.reasons = [f"triage failed: {reason}"]
    session.add(Event(study_id=study.id, stage="failed", detail=reason))
    session.commit()
    return True

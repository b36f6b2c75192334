"""The reconciliation sweep: re-drive every study a crash or a lost message left behind.

The embedded broker drops a task in flight when its worker is killed, and Redis only
redelivers after its visibility timeout; this sweep makes both safe. It runs on start-up
and on a timer, and only ever adds outbox rows: tasks are idempotent per study revision.

A running study is re-driven when the worker that claimed it stopped sending heartbeats
(it died), or when it has run longer than the hard limit (it hangs). A queued study is
re-driven when it has waited long with no message left in the outbox (the broker lost it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import and_, exists, select, true
from sqlalchemy.orm import Session

from common import DraftStatus, EventStage, Queue, StudyStatus
from db.heartbeats import fresh_names
from db.models import Event, OutboxMessage, Study, utcnow


@dataclasses.dataclass(frozen=True, slots=True)
class Redriven:
    triage: list[int]
    draft: list[int]

    def __len__(self) -> int:
        return len(self.triage) + len(self.draft)


@dataclasses.dataclass(frozen=True, slots=True)
class _Stage:
    task: Queue
    status: object  # the Study column holding this stage's state
    changed: object
    claimed_by: object
    running: str
    queued: str


_TRIAGE = _Stage(Queue.TRIAGE, Study.status, Study.state_changed_at, Study.claimed_by,
                 StudyStatus.TRIAGING, StudyStatus.QUEUED)
_DRAFT = _Stage(Queue.DRAFT, Study.draft_status, Study.draft_changed_at, Study.draft_claimed_by,
                DraftStatus.DRAFTING, DraftStatus.QUEUED)


def redrive_stuck(
    session: Session,
    *,
    running_timeout: float,
    queued_timeout: float,
    worker_lost_after: float,
    now: dt.datetime | None = None,
) -> Redriven:
    """Queue again what a dead worker or a lost message left behind (see the module doc)."""
    now = now or utcnow()
    alive = fresh_names(session, within_seconds=worker_lost_after, now=now)
    triage = _redrive(session, _TRIAGE, alive, running_timeout, queued_timeout, worker_lost_after, now)
    draft = _redrive(session, _DRAFT, alive, running_timeout, queued_timeout, worker_lost_after, now)
    session.commit()
    return Redriven(triage, draft)


def _redrive(session: Session, stage: _Stage, alive: set[str], running_timeout: float, queued_timeout: float,
             lost_after: float, now: dt.datetime) -> list[int]:
    def before(seconds: float) -> dt.datetime:
        return now - dt.timedelta(seconds=seconds)

    unsent = exists().where(
        and_(OutboxMessage.study_id == Study.id, OutboxMessage.task == stage.task, OutboxMessage.sent_at.is_(None))
    )
    running_too_long = (stage.status == stage.running) & (stage.changed <= before(running_timeout))
    worker_lost = (
        (stage.status == stage.running)
        & (stage.changed <= before(lost_after))
        & ((stage.claimed_by.is_(None)) | (stage.claimed_by.not_in(alive) if alive else true()))
    )
    lost_message = (stage.status == stage.queued) & (stage.changed <= before(queued_timeout)) & ~unsent
    stuck = session.scalars(
        select(Study).where(running_too_long | worker_lost | lost_message).with_for_update(skip_locked=True)
    ).all()
    for study in stuck:
        was = getattr(study, stage.status.key)
        if stage is _TRIAGE:
            study.move_to(stage.queued, now)
        else:
            study.move_draft_to(stage.queued, now)
        session.add(OutboxMessage(task=stage.task, study_id=study.id, revision=study.revision,
                                  priority_rank=study.priority_rank))
        session.add(Event(study_id=study.id, stage=EventStage.REDRIVEN, detail=f"{stage.task}: was {was}"))
    return [study.id for study in stuck]


def overdue_workers(session: Session, *, workers: list[str], seconds: float,
                    now: dt.datetime | None = None) -> set[str]:
    """Which of ``workers`` hold a triage or draft claim older than ``seconds`` (hung tasks)."""
    before = (now or utcnow()) - dt.timedelta(seconds=seconds)
    triage = select(Study.claimed_by).where(
        Study.status == StudyStatus.TRIAGING, Study.claimed_by.in_(workers), Study.state_changed_at <= before
    )
    draft = select(Study.draft_claimed_by).where(
        Study.draft_status == DraftStatus.DRAFTING, Study.draft_claimed_by.in_(workers),
        Study.draft_changed_at <= before,
    )
    return set(session.scalars(triage)) | set(session.scalars(draft))

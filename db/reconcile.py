"""The reconciliation sweep: re-drive every study a crash or a lost message left behind.

The embedded broker drops a task in flight when its worker is killed, and Redis only
redelivers after its visibility timeout; this sweep makes both safe. It runs on start-up
and on a timer, and only ever adds outbox rows: tasks are idempotent per study revision.

A running study is re-driven when the worker that claimed it stopped sending heartbeats
(it died), when that worker has finished a later task (its claim was abandoned: one worker
process runs one task at a time), or when it has run longer than the hard limit (it hangs).

A queued study whose message left the outbox is re-driven when the message may be gone:
at once when asked (``requeue_waiting``: on start-up, after a worker died holding messages,
after the broker restarted), after ``queued_idle`` seconds when the broker says its queue
is empty (nothing ahead of it, so the message was lost), and after ``queued_timeout`` in any
case. A message sent twice costs one claim that finds nothing to do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection

from sqlalchemy import and_, exists, false, select, true
from sqlalchemy.orm import Session, aliased

from common import DraftStatus, EventStage, Queue, StudyStatus
from db.heartbeats import fresh_names
from db.models import Event, OutboxMessage, Study, utcnow

# A claim younger than this is left alone even when its worker is not (yet) among the
# heartbeats: a worker's sidecar may not have beaten yet. Dead workers are known sooner.
CLAIM_GRACE_SECONDS = 10.0


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
    finished: tuple[str, ...]  # states a finished task leaves (proof its worker moved on)


_TRIAGE = _Stage(Queue.TRIAGE, Study.status, Study.state_changed_at, Study.claimed_by,
                 StudyStatus.TRIAGING, StudyStatus.QUEUED, (StudyStatus.TRIAGED, StudyStatus.FAILED))
# A draft batch claims several studies at once, so a finished one proves nothing about the others.
_DRAFT = _Stage(Queue.DRAFT, Study.draft_status, Study.draft_changed_at, Study.draft_claimed_by,
                DraftStatus.DRAFTING, DraftStatus.QUEUED, ())


def redrive_stuck(
    session: Session,
    *,
    running_timeout: float,
    queued_timeout: float,
    worker_lost_after: float,
    now: dt.datetime | None = None,
    queued_idle: float | None = None,
    idle_queues: Collection[str] = (),
    requeue_waiting: bool = False,
) -> Redriven:
    """Queue again what a dead worker or a lost message left behind (see the module doc).

    ``idle_queues``: the queues the broker holds no message for; their queued studies are
    re-driven after ``queued_idle`` seconds. ``requeue_waiting``: every queued study whose
    message was sent is sent again now (messages may have been lost).
    """
    now = now or utcnow()
    alive = fresh_names(session, within_seconds=worker_lost_after, now=now)
    rules = _Rules(running_timeout, queued_timeout, min(worker_lost_after, CLAIM_GRACE_SECONDS),
                   queued_idle if queued_idle is not None else queued_timeout, frozenset(idle_queues),
                   requeue_waiting)
    triage = _redrive(session, _TRIAGE, alive, rules, now)
    draft = _redrive(session, _DRAFT, alive, rules, now)
    session.commit()
    return Redriven(triage, draft)


@dataclasses.dataclass(frozen=True, slots=True)
class _Rules:
    running_timeout: float
    queued_timeout: float
    claim_grace: float
    queued_idle: float
    idle_queues: frozenset[str]
    requeue_waiting: bool


def _redrive(session: Session, stage: _Stage, alive: set[str], rules: _Rules, now: dt.datetime) -> list[int]:
    def before(seconds: float) -> dt.datetime:
        return now - dt.timedelta(seconds=seconds)

    unsent = exists().where(
        and_(OutboxMessage.study_id == Study.id, OutboxMessage.task == stage.task, OutboxMessage.sent_at.is_(None))
    )
    running = stage.status == stage.running
    running_too_long = running & (stage.changed <= before(rules.running_timeout))
    worker_lost = (
        running
        & (stage.changed <= before(rules.claim_grace))
        & ((stage.claimed_by.is_(None)) | (stage.claimed_by.not_in(alive) if alive else true()))
    )
    abandoned = running & _finished_later(stage) if stage.finished else false()
    queued = (stage.status == stage.queued) & ~unsent
    waited = stage.changed <= before(rules.queued_timeout)
    if stage.task in rules.idle_queues:
        waited |= stage.changed <= before(rules.queued_idle)
    lost_message = queued & (true() if rules.requeue_waiting else waited)
    stuck = session.scalars(
        select(Study).where(running_too_long | worker_lost | abandoned | lost_message).with_for_update(skip_locked=True)
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


def _finished_later(stage: _Stage):
    """The claiming worker has since finished another task of this stage: this claim was
    abandoned (the database was away when the task tried to give it back), not running."""
    other = aliased(Study)
    status, changed, claimed_by = (getattr(other, column.key) for column in (stage.status, stage.changed,
                                                                             stage.claimed_by))
    return exists().where(and_(other.id != Study.id, claimed_by == stage.claimed_by,
                               status.in_(stage.finished), changed > stage.changed))


def overdue_workers(session: Session, *, workers: list[str], seconds: float,
                    now: dt.datetime | None = None) -> set[str]:
    """Which of ``workers`` hold a triage or draft claim older than ``seconds`` (hung tasks).

    A worker that finished a triage after the old claim is making progress: the claim was
    abandoned, and the sweep re-drives it; the worker is not hung.
    """
    before = (now or utcnow()) - dt.timedelta(seconds=seconds)
    triage = select(Study.claimed_by).where(
        Study.status == StudyStatus.TRIAGING, Study.claimed_by.in_(workers), Study.state_changed_at <= before,
        ~_finished_later(_TRIAGE),
    )
    draft = select(Study.draft_claimed_by).where(
        Study.draft_status == DraftStatus.DRAFTING, Study.draft_claimed_by.in_(workers),
        Study.draft_changed_at <= before,
    )
    return set(session.scalars(triage)) | set(session.scalars(draft))

"""The reconciliation sweep: re-drive every study a crash or a lost message left behind.

The embedded broker drops a task in flight when its worker is killed, and Redis only
redelivers after its visibility timeout; this sweep makes both safe. It runs on start-up
and on a timer, and only ever adds outbox rows: tasks are idempotent per study revision.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import and_, exists, select
from sqlalchemy.orm import Session

from db.assembly import TRIAGE_TASK
from db.models import DraftStatus, Event, OutboxMessage, Study, StudyStatus, utcnow
from db.triage import DRAFT_TASK


@dataclasses.dataclass(frozen=True, slots=True)
class Redriven:
    triage: list[int]
    draft: list[int]

    def __len__(self) -> int:
        return len(self.triage) + len(self.draft)


def redrive_stuck(
    session: Session, *, running_timeout: float, queued_timeout: float, now: dt.datetime | None = None
) -> Redriven:
    """Queue again what has been ``triaging``/``drafting`` for ``running_timeout`` seconds
    (its worker died) or ``queued`` for ``queued_timeout`` seconds with no message waiting
    in the outbox (the broker lost it)."""
    now = now or utcnow()
    running_before = now - dt.timedelta(seconds=running_timeout)
    queued_before = now - dt.timedelta(seconds=queued_timeout)
    triage = _redrive(
        session, TRIAGE_TASK, Study.status, Study.state_changed_at, StudyStatus.TRIAGING, StudyStatus.QUEUED,
        running_before, queued_before, now,
    )
    draft = _redrive(
        session, DRAFT_TASK, Study.draft_status, Study.draft_changed_at, DraftStatus.DRAFTING, DraftStatus.QUEUED,
        running_before, queued_before, now,
    )
    session.commit()
    return Redriven(triage, draft)


def _redrive(session, task, status_col, changed_col, running, queued, running_before, queued_before, now) -> list[int]:
    unsent = exists().where(
        and_(OutboxMessage.study_id == Study.id, OutboxMessage.task == task, OutboxMessage.sent_at.is_(None))
    )
    stuck = session.scalars(
        select(Study)
        .where(
            ((status_col == running) & (changed_col <= running_before))
            | ((status_col == queued) & (changed_col <= queued_before) & ~unsent)
        )
        .with_for_update(skip_locked=True)
    ).all()
    for study in stuck:
        was = getattr(study, status_col.key)
        if task == TRIAGE_TASK:
            study.move_to(queued, now)
        else:
            study.move_draft_to(queued, now)
        session.add(OutboxMessage(task=task, study_id=study.id, revision=study.revision,
                                  priority_rank=study.priority_rank))
        session.add(Event(study_id=study.id, stage="redriven", detail=f"{task}: was {was}"))
    return [study.id for study in stuck]

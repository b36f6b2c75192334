"""Studies that hold no chest radiograph, kept off the worklist when the site says so.

With ``worklist_non_chest = "hide"`` triage takes such a study off the active worklist the
way reading does (``read_at``), read by :data:`HIDDEN_BY` rather than a person, so the
worklist's one partial index over unread studies leaves it out at no cost; ``include_read``
still finds it. An image arriving later (a new revision) puts it back.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from common import EventStage
from db.models import Event, Study, utcnow

HIDDEN_BY = "radtriage (not a chest radiograph)"


def hide_from_worklist(session: Session, *, study_id: int, revision: int, now: dt.datetime | None = None) -> bool:
    """Take the study off the active worklist; False (nothing written) if stale or already read."""
    study = session.get(Study, study_id, with_for_update=True)
    if study is None or study.revision != revision or study.read_at is not None:
        session.rollback()
        return False
    now = now or utcnow()
    study.read_at, study.read_by = now, HIDDEN_BY
    session.add(Event(study_id=study.id, stage=EventStage.READ, detail="kept off the worklist: not a chest radiograph",
                      created_at=now))
    session.commit()
    return True


def show_again(study: Study) -> None:
    """A new revision of a hidden study goes back on the worklist (a person's read stays)."""
    if study.read_by == HIDDEN_BY:
        study.read_at = study.read_by = None

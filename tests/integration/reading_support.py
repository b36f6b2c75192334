"""Studies for the reading-state tests, written the way ingest and triage leave them."""

from __future__ import annotations

import datetime as dt
import itertools

from common import Priority, StudyStatus
from db.models import Study

NOW = dt.datetime(2024, 5, 6, 12, 0, tzinfo=dt.timezone.utc)
_serial = itertools.count(1)


def add(session, *, ordered: Priority = Priority.ROUTINE, ai: Priority | None = None, urgency: float | None = None,
        waited: dt.timedelta = dt.timedelta(0), uid: str | None = None, accession: str | None = None,
        now: dt.datetime = NOW) -> Study:
    """A triaged study received ``waited`` before ``now`` (not committed)."""
    n = next(_serial)
    study = Study(study_instance_uid=uid or f"1.2.826.0.1.{n}", accession_number=accession or f"A{n:07d}",
                  ordered_priority=Priority(ordered).value, status=StudyStatus.TRIAGED, reasons=[], revision=1,
                  received_at=now - waited, last_instance_at=now - waited, state_changed_at=now,
                  instance_count=1)
    study.set_priority(ordered)
    if ai is not None:
        study.set_priority(Priority.most_urgent(ordered, ai))
    study.urgency_score = urgency
    session.add(study)
    return study

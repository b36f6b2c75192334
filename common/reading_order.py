"""The reading order: which study a radiologist should read next. The one definition, used by
the worklist queries, the escalation loop, the API, the page and the reading-room simulation.

- The **priority** of a study is the more urgent of what was ordered and what the AI said
  (the AI only ever raises it).
- Its **effective priority** is that priority escalated one step each time the study has
  waited past its class's maximum wait: ROUTINE → URGENT after ``routine``, then → STAT after
  a further ``urgent``; URGENT → STAT after ``urgent``. STAT is never escalated. A wait of
  ``None`` switches that step off. The wait counts from when the study was received.
- Studies are read **most urgent effective priority first; within a class, higher urgency
  score first (a study without a score after every scored one), then the one that has waited
  longer, then by id** (a stable tie-break).

A study marked read leaves the active worklist; the order applies to the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from common.priority import Priority


@dataclasses.dataclass(frozen=True, slots=True)
class Waits:
    """The maximum wait of each class before a study moves up one step (None: never)."""

    routine: dt.timedelta | None
    urgent: dt.timedelta | None

    def __post_init__(self) -> None:
        for wait in (self.routine, self.urgent):
            if wait is not None and wait <= dt.timedelta(0):
                raise ValueError("a maximum wait must be positive (or None for no escalation)")

    def boundaries(self, priority: Priority) -> tuple[tuple[dt.timedelta, Priority], ...]:
        """The waits after which a study of ``priority`` reaches each higher class, in order."""
        priority = Priority(priority)
        steps: list[tuple[dt.timedelta, Priority]] = []
        waited = dt.timedelta(0)
        if priority is Priority.ROUTINE:
            if self.routine is None:
                return ()
            waited = self.routine
            steps.append((waited, Priority.URGENT))
            priority = Priority.URGENT
        if priority is Priority.URGENT and self.urgent is not None:
            steps.append((waited + self.urgent, Priority.STAT))
        return tuple(steps)


@dataclasses.dataclass(frozen=True, slots=True)
class Effective:
    """A study's place in the reading order at one moment."""

    priority: Priority  # after escalation
    escalated_from: Priority | None  # the class it was in before waiting raised it; None: not escalated

    @property
    def escalated(self) -> bool:
        return self.escalated_from is not None


def effective_priority(priority: Priority | str, waited: dt.timedelta, waits: Waits) -> Effective:
    """``priority`` escalated for a study that has waited ``waited`` (a wait exactly at a
    boundary escalates)."""
    priority = Priority(priority)
    reached = priority
    for boundary, higher in waits.boundaries(priority):
        if waited >= boundary:
            reached = higher
    return Effective(reached, priority if reached is not priority else None)


def reading_key(effective: Priority | str, urgency_score: float | None, received_at: dt.datetime,
                study_id: int = 0) -> tuple:
    """Sort key: ``sorted(studies, key=...)`` gives the reading order."""
    no_score = urgency_score is None
    return (-Priority(effective).rank, no_score, -(urgency_score or 0.0), received_at, study_id)

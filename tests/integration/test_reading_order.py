"""The reading order on the stored worklist, rule by rule, and waiting-time escalation recorded
once per step, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from common import EventStage, Priority, Waits, effective_priority, reading_key
from db.escalation import escalate_due
from db.models import Event
from db.worklist import page
from tests.integration.reading_support import NOW, add

R, U, S = Priority.ROUTINE, Priority.URGENT, Priority.STAT
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
WAITS = Waits(routine=2 * H, urgent=1 * H)

# (rule, studies as (name, ordered, ai, urgency, waited), the reading order expected)
CASES = [
    ("AI raises, never lowers: a STAT order the AI calls ROUTINE stays STAT",
     [("stat_order", S, R, 5.0, M), ("ai_stat", R, S, 90.0, M), ("routine", R, R, 99.0, M)],
     ["ai_stat", "stat_order", "routine"]),
    ("within a class, higher urgency first",
     [("low", U, U, 10.0, 5 * M), ("high", U, U, 80.0, M)],
     ["high", "low"]),
    ("same urgency: the one waiting longer first",
     [("newer", R, R, 50.0, M), ("older", R, R, 50.0, 9 * M)],
     ["older", "newer"]),
    ("unscored after every scored one of its class",
     [("unscored", R, None, None, 30 * M), ("scored_zero", R, R, 0.0, M)],
     ["scored_zero", "unscored"]),
    ("escalation exactly at the boundary; a minute before, not",
     [("at_boundary", R, R, 1.0, 2 * H), ("before", R, R, 99.0, 2 * H - M), ("urgent", U, U, 50.0, M)],
     ["urgent", "at_boundary", "before"]),
    ("ROUTINE reaches STAT after both waits; URGENT after its own",
     [("routine_3h", R, R, 1.0, 3 * H), ("urgent_1h", U, U, 2.0, H), ("stat", S, S, 3.0, M)],
     ["stat", "urgent_1h", "routine_3h"]),
    ("an escalated study ranks with its new class by urgency, not above it",
     [("escalated", R, R, 10.0, 2 * H + M), ("urgent_hi", U, U, 60.0, M), ("urgent_lo", U, U, 5.0, M)],
     ["urgent_hi", "escalated", "urgent_lo"]),
]


@pytest.mark.parametrize("rule, studies, expected", CASES, ids=[c[0] for c in CASES])
def test_reading_order_rule(sessions, rule, studies, expected):
    by_uid, keys = {}, {}
    with sessions() as session:
        for name, ordered, ai, urgency, waited in studies:
            study = add(session, ordered=ordered, ai=ai, urgency=urgency, waited=waited)
            session.flush()
            by_uid[study.study_instance_uid] = name
            effective = effective_priority(study.priority, waited, WAITS)
            keys[name] = reading_key(effective.priority, urgency, NOW - waited, study.id)
        session.commit()
        escalate_due(session, waits=WAITS, now=NOW)
        listed = [by_uid[row.study_instance_uid] for row in page(session, now=NOW).rows]
    assert listed == expected
    assert listed == sorted(keys, key=keys.get)  # the stored order is the one definition's


def test_escalation_writes_one_event_per_step_and_none_on_the_next_round(sessions):
    with sessions() as session:
        long_wait = add(session, ordered=R, waited=3 * H + M)  # two steps at once
        one_step = add(session, ordered=R, waited=2 * H)
        fresh = add(session, ordered=R, waited=M)
        session.commit()
        assert escalate_due(session, waits=WAITS, now=NOW) == 3
        assert escalate_due(session, waits=WAITS, now=NOW + M) == 0
        events = session.execute(select(Event.study_id, Event.detail).where(Event.stage == EventStage.ESCALATED)
                                 .order_by(Event.study_id, Event.id)).all()
        assert events == [(long_wait.id, "waited 2 h 00 min, ROUTINE → URGENT"),
                          (long_wait.id, "waited 3 h 00 min, URGENT → STAT"),
                          (one_step.id, "waited 2 h 00 min, ROUTINE → URGENT")]
        rows = {r.study_instance_uid: r for r in page(session, now=NOW).rows}
    assert rows[long_wait.study_instance_uid].priority is S and rows[long_wait.study_instance_uid].escalated
    assert rows[long_wait.study_instance_uid].escalated_from is R
    assert rows[fresh.study_instance_uid].priority is R and not rows[fresh.study_instance_uid].escalated


def test_a_priority_raised_later_is_recomputed_and_never_drops(sessions):
    with sessions() as session:
        study = add(session, ordered=R, waited=2 * H + 30 * M)
        session.commit()
        escalate_due(session, waits=WAITS, now=NOW)  # ROUTINE → URGENT
        study.set_priority(U)  # the AI says URGENT: its own wait (1 h) has long passed
        session.commit()
        assert study.effective_rank == U.rank and study.escalated_from is None
        escalate_due(session, waits=WAITS, now=NOW)
        assert study.effective_rank == S.rank and study.escalated_from == U.value
        study.set_priority(U)  # a later, equal call: STAT stays
        session.commit()
        assert study.effective_rank == S.rank
        details = session.scalars(select(Event.detail).where(Event.stage == EventStage.ESCALATED)
                                  .order_by(Event.id)).all()
    assert details == ["waited 2 h 00 min, ROUTINE → URGENT", "waited 1 h 00 min, URGENT → STAT"]


def test_escalation_switched_off_never_moves_a_study(sessions):
    with sessions() as session:
        add(session, ordered=R, waited=100 * H)
        session.commit()
        assert escalate_due(session, waits=Waits(routine=None, urgent=None), now=NOW) == 0
        assert page(session, now=NOW).rows[0].priority is R

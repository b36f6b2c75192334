"""Study completeness in the database: views after a grace, else the quiet timer; late arrivals reopen.

Times are passed explicitly, so nothing here sleeps.
"""

from __future__ import annotations

import datetime as dt

from pydicom.uid import generate_uid
from sqlalchemy import select

from common import Priority
from db.assembly import complete_quiet_studies
from db.backfill import complete_for_backfill
from db.ingest import IngestOutcome, NewInstance, record_instance
from db.models import Event, OutboxMessage, Study
from db.session import make_engine, make_session_factory

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)
STABLE, GRACE = 5.0, 0.5


def instance(study: str, view: str | None, expected: int | None = None, sop: str | None = None,
             sha: str | None = None) -> NewInstance:
    sop = sop or generate_uid()
    return NewInstance(
        study_instance_uid=study, series_instance_uid=generate_uid(), sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
        ordered_priority=Priority.ROUTINE, path=f"objects/{sha or sop}.dcm", content_hash="blake3:" + (sha or sop)[-64:],
        size_bytes=1, view=view, expected_instances=expected,
    )


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def record(sessions, new: NewInstance, seconds: float) -> IngestOutcome:
    with sessions() as session:
        return record_instance(session, new=new, now=at(seconds)).outcome


def complete(sessions, seconds: float) -> list[int]:
    with sessions() as session:
        return complete_quiet_studies(session, stable_seconds=STABLE, grace_seconds=GRACE, now=at(seconds))


def study_row(sessions, uid: str) -> Study:
    with sessions() as session:
        return session.scalars(select(Study).where(Study.study_instance_uid == uid)).one()


def test_frontal_and_lateral_complete_after_the_grace(sessions):
    uid = generate_uid()
    record(sessions, instance(uid, "frontal"), 0)
    assert complete(sessions, 1) == [], "frontal alone waits for a lateral or the quiet timer"
    record(sessions, instance(uid, "lateral"), 1)
    assert complete(sessions, 1.3) == [], "within the grace"
    assert complete(sessions, 1.6) == [study_row(sessions, uid).id]
    with sessions() as session:
        outbox = session.scalars(select(OutboxMessage)).all()
        detail = session.scalars(select(Event.detail).where(Event.stage == "complete")).one()
    assert [(m.task, m.revision) for m in outbox] == [("triage", 1)], "the outbox row came with the completion"
    assert detail.endswith("views complete")


def test_expected_count_from_number_of_study_related_instances(sessions):
    uid = generate_uid()
    record(sessions, instance(uid, "frontal", expected=3), 0)
    record(sessions, instance(uid, "lateral", expected=3), 0.1)
    assert complete(sessions, 1) == [], "3 announced, 2 received"
    record(sessions, instance(uid, None, expected=3), 1)
    assert len(complete(sessions, 1.6)) == 1


def test_no_frontal_view_waits_for_the_quiet_timer(sessions):
    uid = generate_uid()
    record(sessions, instance(uid, "lateral", expected=1), 0)
    assert complete(sessions, 4.9) == []
    assert len(complete(sessions, 5.1)) == 1
    with sessions() as session:
        assert session.scalars(select(Event.detail).where(Event.stage == "complete")).one().endswith("quiet timer")


def test_a_revision_of_an_instance_is_not_a_second_instance(sessions):
    uid, sop = generate_uid(), generate_uid()
    record(sessions, instance(uid, "frontal", expected=2, sop=sop, sha="a" * 64), 0)
    record(sessions, instance(uid, "frontal", expected=2, sop=sop, sha="b" * 64), 0.1)
    assert complete(sessions, 1) == []
    assert study_row(sessions, uid).instance_count == 1


def test_late_instance_reopens_and_completes_again_with_the_next_revision(sessions):
    uid = generate_uid()
    record(sessions, instance(uid, "frontal", expected=1), 0)
    assert len(complete(sessions, 0.6)) == 1
    assert record(sessions, instance(uid, "lateral", expected=1), 30) is IngestOutcome.REOPENED
    row = study_row(sessions, uid)
    assert (row.status, row.revision, row.instance_count) == ("receiving", 2, 2)
    assert len(complete(sessions, 30.6)) == 1
    with sessions() as session:
        assert [m.revision for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))] == [1, 2]


def test_a_restart_loses_nothing(sessions, tmp_path):
    uid = generate_uid()
    record(sessions, instance(uid, "frontal"), 0)
    record(sessions, instance(uid, "lateral"), 0.1)
    # A new engine and session factory on the same database: what a restarted daemon has.
    url = sessions.kw["bind"].url.render_as_string(hide_password=False)
    engine = make_engine(url)
    restarted = make_session_factory(engine)
    try:
        assert study_row(restarted, uid).views_complete
        assert len(complete(restarted, 1)) == 1
    finally:
        engine.dispose()


def test_the_view_rule_can_be_turned_off(sessions):
    uid = generate_uid()
    record(sessions, instance(uid, "frontal", expected=1), 0)
    with sessions() as session:
        assert complete_quiet_studies(session, stable_seconds=STABLE, grace_seconds=None, now=at(1)) == []


def test_a_backfill_completes_its_studies_without_an_outbox_row(sessions):
    queued, receiving = generate_uid(), generate_uid()
    record(sessions, instance(queued, "lateral"), 0)
    record(sessions, instance(receiving, "frontal"), STABLE - 1)
    queued_id, receiving_id = study_row(sessions, queued).id, study_row(sessions, receiving).id
    assert complete(sessions, STABLE) == [queued_id], "the other study is neither quiet nor complete by its views"
    with sessions() as session:
        waiting = complete_for_backfill(session, study_ids=[receiving_id, queued_id], now=at(STABLE + 0.1))
        details = session.scalars(select(Event.detail).where(Event.stage == "complete").order_by(Event.id)).all()
        outbox = session.scalars(select(OutboxMessage.study_id)).all()
    assert sorted(waiting) == sorted([(queued_id, 1), (receiving_id, 1)]), "(id, revision) of all waiting"
    assert details == ["revision 1, quiet timer", "revision 1, backfill"]
    assert outbox == [queued_id], "the backfill triages its studies itself"
    assert study_row(sessions, receiving).status == "queued"

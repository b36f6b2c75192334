"""A radiologist's claim, release and read, on SQLite and PostgreSQL: one claimant wins a race,
a claim shows as theirs to others, an idle claim expires, and a read study leaves the worklist."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import select

from common import EventStage
from db.models import Event
from db.reading import (
    AlreadyRead,
    ClaimConflict,
    NotClaimant,
    StudyNotFound,
    claim,
    expire_idle_claims,
    mark_read,
    release,
)
from db.study_detail import study_detail
from db.worklist import Filters, page
from tests.integration.reading_support import NOW, add

M = dt.timedelta(minutes=1)


def one_study(sessions) -> str:
    with sessions() as session:
        uid = add(session).study_instance_uid
        session.commit()
    return uid


def stages(sessions, uid) -> list[tuple[str, str]]:
    with sessions() as session:
        return [(e.stage, e.detail) for e in study_detail(session, study_uid=uid).history]


def test_a_claim_is_the_claimants_and_refused_to_others(sessions):
    uid = one_study(sessions)
    with sessions() as session:
        assert claim(session, study_uid=uid, user="alice", now=NOW).changed
        again = claim(session, study_uid=uid, user="alice", now=NOW + M)  # her own claim again: fine
        assert again.reader == "alice" and not again.changed
        with pytest.raises(ClaimConflict) as conflict:
            claim(session, study_uid=uid, user="bob", now=NOW + M)
        assert conflict.value.reader == "alice" and uid not in str(conflict.value)
        with pytest.raises(NotClaimant):
            release(session, study_uid=uid, user="bob")
        row = page(session, now=NOW, filters=Filters(claimed="me", user="bob")).rows
        assert row == []
        (mine,) = page(session, now=NOW, filters=Filters(claimed="me", user="alice")).rows
        assert mine.claimed_by == "alice" and mine.claimed_at == NOW
        assert page(session, now=NOW, filters=Filters(claimed="unclaimed")).rows == []
        with pytest.raises(StudyNotFound):
            claim(session, study_uid="9.9.9", user="bob")
    assert stages(sessions, uid) == [(EventStage.CLAIMED, "by alice")]


def test_an_admin_releases_anyones_claim(sessions):
    uid = one_study(sessions)
    with sessions() as session:
        claim(session, study_uid=uid, user="alice", now=NOW)
        assert release(session, study_uid=uid, user="root", admin=True, now=NOW).reader is None
        assert not release(session, study_uid=uid, user="root", admin=True).changed  # nothing left to release
        assert claim(session, study_uid=uid, user="bob", now=NOW).reader == "bob"
        assert release(session, study_uid=uid, user="bob", now=NOW).changed
    assert [s for s, _ in stages(sessions, uid)] == ["claimed", "released", "claimed", "released"]
    assert stages(sessions, uid)[1][1] == "claim of alice released by admin root"


def test_two_simultaneous_claims_exactly_one_wins(sessions):
    uids = [one_study(sessions) for _ in range(5)]
    for uid in uids:
        barrier, won, lost = threading.Barrier(4), [], []

        def attempt(user):
            with sessions() as session:
                barrier.wait()
                try:
                    claim(session, study_uid=uid, user=user)
                    won.append(user)
                except ClaimConflict:
                    lost.append(user)

        threads = [threading.Thread(target=attempt, args=(f"reader{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(won) == 1 and len(lost) == 3
        with sessions() as session:
            assert study_detail(session, study_uid=uid).row.claimed_by == won[0]
        assert [s for s, _ in stages(sessions, uid)] == ["claimed"]


def test_an_idle_claim_expires_and_activity_keeps_it(sessions):
    idle, busy = one_study(sessions), one_study(sessions)
    with sessions() as session:
        claim(session, study_uid=idle, user="alice", now=NOW)
        claim(session, study_uid=busy, user="bob", now=NOW)
        claim(session, study_uid=busy, user="bob", now=NOW + 20 * M)  # bob acted on it again
        assert expire_idle_claims(session, idle_after=30 * M, now=NOW + 29 * M) == 0
        assert expire_idle_claims(session, idle_after=30 * M, now=NOW + 30 * M) == 1
        assert expire_idle_claims(session, idle_after=30 * M, now=NOW + 31 * M) == 0
        rows = {r.study_instance_uid: r for r in page(session, now=NOW).rows}
    assert rows[idle].claimed_by is None and rows[busy].claimed_by == "bob"
    assert stages(sessions, idle)[-1] == (EventStage.CLAIM_EXPIRED, "claim of alice idle 30 min")


def test_a_read_study_leaves_the_worklist_with_who_and_when(sessions):
    read, other = one_study(sessions), one_study(sessions)
    with sessions() as session:
        claim(session, study_uid=read, user="bob", now=NOW)
        with pytest.raises(ClaimConflict):
            mark_read(session, study_uid=read, user="alice")
        state = mark_read(session, study_uid=read, user="bob", now=NOW + M)
        assert (state.read_by, state.read_at, state.reader) == ("bob", NOW + M, None)
        with pytest.raises(AlreadyRead):
            mark_read(session, study_uid=read, user="bob")
        with pytest.raises(AlreadyRead):
            claim(session, study_uid=read, user="alice")
        assert [r.study_instance_uid for r in page(session, now=NOW).rows] == [other]
        listed = page(session, now=NOW, filters=Filters(include_read=True)).rows
        assert {r.study_instance_uid for r in listed} == {read, other}
        detail = study_detail(session, study_uid=read)
        assert detail.row.read_by == "bob"
        assert session.scalars(select(Event.stage).order_by(Event.id)).all() == ["claimed", "read"]

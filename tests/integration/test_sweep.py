"""The reconciliation sweep re-drives what a dead worker, a hung task or a lost message left
behind, and nothing else; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest

from common import DraftStatus, Priority, StudyStatus
from db.drafts import claim_batch
from db.heartbeats import beat
from db.models import utcnow
from db.reconcile import CLAIM_GRACE_SECONDS, overdue_workers, redrive_stuck
from db.triage import claim, record_result
from tests.integration.worker_support import (
    QUEUED_TIMEOUT,
    RUNNING_TIMEOUT,
    STABLE,
    WORKER_LOST,
    draft_queued,
    queued_study,
    seconds,
    stages,
    study_of,
    sweep,
    unsent,
)


@pytest.mark.parametrize("case", ["stale-heartbeat", "heartbeat-gone", "nobody-alive"])
def test_sweep_redrives_the_triage_of_a_dead_worker_only(sessions, case) -> None:
    with sessions() as session:
        dead = queued_study(session, at=utcnow() - seconds(3600))
        other = queued_study(session, at=utcnow() - seconds(3600))
        assert claim(session, study_id=dead, revision=1, worker="host-a:1") is not None
        assert claim(session, study_id=other, revision=1, worker="host-b:2") is not None
        claimed_at = utcnow()
        if case != "heartbeat-gone":  # gone: its sidecar removed the row when the worker exited
            beat(session, name="host-a:1", queues="triage", now=claimed_at - seconds(WORKER_LOST * 3))

        def beats(now):
            # host-b keeps beating, except when every worker is dead.
            beat(session, name="host-b:2", queues="triage", now=now if case != "nobody-alive" else claimed_at)

        # Claimed a moment ago: a silent worker alone is not enough (it may just be starting).
        beats(claimed_at + seconds(5))
        assert len(sweep(session, now=claimed_at + seconds(5))) == 0

        later = claimed_at + seconds(WORKER_LOST + 1)
        beats(later)
        redriven = sweep(session, now=later)
    lost = [dead] if case != "nobody-alive" else [dead, other]
    assert sorted(redriven.triage) == lost and redriven.draft == []
    for study_id in lost:
        assert study_of(sessions, study_id).status == StudyStatus.QUEUED
        assert unsent(sessions, study_id, "triage") == 1
        assert stages(sessions, study_id, "redriven") == ["triage: was triaging"]
    if case != "nobody-alive":
        assert study_of(sessions, other).status == StudyStatus.TRIAGING
        assert unsent(sessions, other, "triage") == 0 and stages(sessions, other, "redriven") == []

    with sessions() as session:
        assert len(sweep(session, now=later + seconds(1))) == 0  # its message is waiting: once is enough
        again = claim(session, study_id=dead, revision=1, worker="host-c:3")
    assert again is not None and study_of(sessions, dead).attempts == 2


def test_sweep_waits_for_the_running_timeout_while_the_worker_beats(sessions) -> None:
    with sessions() as session:
        study_id = queued_study(session, at=utcnow() - seconds(3600))
        assert claim(session, study_id=study_id, revision=1, worker="host-a:1") is not None
        claimed_at = utcnow()
        for wait in (WORKER_LOST * 2, RUNNING_TIMEOUT - 5):
            beat(session, name="host-a:1", queues="triage", now=claimed_at + seconds(wait))
            assert len(sweep(session, now=claimed_at + seconds(wait))) == 0
        assert study_of(sessions, study_id).status == StudyStatus.TRIAGING

        hung = claimed_at + seconds(RUNNING_TIMEOUT + 1)
        beat(session, name="host-a:1", queues="triage", now=hung)
        assert sweep(session, now=hung).triage == [study_id]
    assert study_of(sessions, study_id).status == StudyStatus.QUEUED
    assert unsent(sessions, study_id, "triage") == 1
    assert stages(sessions, study_id, "redriven") == ["triage: was triaging"]


def test_sweep_leaves_a_queued_study_with_a_waiting_message(sessions) -> None:
    with sessions() as session:
        study_id = queued_study(session, at=utcnow() - seconds(3600), sent=False)
        assert len(sweep(session, now=utcnow() + seconds(QUEUED_TIMEOUT * 10))) == 0
    assert study_of(sessions, study_id).status == StudyStatus.QUEUED
    assert unsent(sessions, study_id, "triage") == 1
    assert stages(sessions, study_id, "redriven") == []


def test_sweep_redrives_a_queued_study_whose_message_was_lost(sessions) -> None:
    received = utcnow() - seconds(3600)
    completed = received + seconds(STABLE + 1)
    with sessions() as session:
        study_id = queued_study(session, at=received)  # sent, then lost by the broker
        assert len(sweep(session, now=completed + seconds(QUEUED_TIMEOUT - 1))) == 0
        assert sweep(session, now=completed + seconds(QUEUED_TIMEOUT + 1)).triage == [study_id]
        assert len(sweep(session, now=completed + seconds(QUEUED_TIMEOUT + 2))) == 0  # not twice
    assert study_of(sessions, study_id).status == StudyStatus.QUEUED
    assert unsent(sessions, study_id, "triage") == 1
    assert stages(sessions, study_id, "redriven") == ["triage: was queued"]


def test_sweep_redrives_drafts_of_a_dead_worker_and_hung_drafts(sessions) -> None:
    triaged = utcnow() - seconds(3600)
    with sessions() as session:
        dead = draft_queued(session, at=triaged)
        alive = draft_queued(session, at=triaged + seconds(1))
        claimed_at = utcnow()
        assert [j.study_id for j in claim_batch(session, limit=1, worker="gpu-a:1", now=claimed_at)] == [dead]
        assert [j.study_id for j in claim_batch(session, limit=1, worker="gpu-b:2", now=claimed_at)] == [alive]

        later = claimed_at + seconds(WORKER_LOST + 1)  # gpu-a never beat; gpu-b beats
        beat(session, name="gpu-b:2", queues="draft", now=later)
        redriven = sweep(session, now=later)
        assert (redriven.triage, redriven.draft) == ([], [dead])
        assert study_of(sessions, alive).draft_status == DraftStatus.DRAFTING

        hung = claimed_at + seconds(RUNNING_TIMEOUT + 1)
        beat(session, name="gpu-b:2", queues="draft", now=hung)
        assert sweep(session, now=hung).draft == [alive]
    for study_id in (dead, alive):
        study = study_of(sessions, study_id)
        assert (study.status, study.draft_status) == (StudyStatus.TRIAGED, DraftStatus.QUEUED)
        assert unsent(sessions, study_id, "draft") == 1 and unsent(sessions, study_id, "triage") == 0
        assert stages(sessions, study_id, "redriven") == ["draft: was drafting"]


def test_sweep_redrives_a_queued_draft_only_when_its_message_is_lost(sessions) -> None:
    triaged = utcnow() - seconds(3600)
    with sessions() as session:
        waiting = draft_queued(session, at=triaged, sent=False)
        lost = draft_queued(session, at=triaged)
        assert len(sweep(session, now=triaged + seconds(QUEUED_TIMEOUT - 1))) == 0
        redriven = sweep(session, now=triaged + seconds(QUEUED_TIMEOUT + 1))
    assert (redriven.triage, redriven.draft) == ([], [lost])
    assert unsent(sessions, lost, "draft") == 1 and stages(sessions, lost, "redriven") == ["draft: was queued"]
    assert unsent(sessions, waiting, "draft") == 1 and stages(sessions, waiting, "redriven") == []



def test_sweep_redrives_a_queued_study_in_seconds_when_its_queue_is_empty(sessions) -> None:
    """The broker holds no message for the queue: nothing is ahead of the study, so its message
    was lost; a queue still holding messages is left to drain (until the queued timeout)."""
    with sessions() as session:
        study_id = queued_study(session, at=utcnow() - seconds(3600))
        queued_at = study_of(sessions, study_id).state_changed_at
        idle = {"running_timeout": RUNNING_TIMEOUT, "queued_timeout": QUEUED_TIMEOUT,
                "worker_lost_after": WORKER_LOST, "queued_idle": 10}
        assert len(redrive_stuck(session, now=queued_at + seconds(9), idle_queues={"triage"}, **idle)) == 0
        assert len(redrive_stuck(session, now=queued_at + seconds(11), idle_queues={"draft"}, **idle)) == 0
        assert redrive_stuck(session, now=queued_at + seconds(11), idle_queues={"triage"}, **idle).triage == [study_id]
    assert unsent(sessions, study_id, "triage") == 1
    assert stages(sessions, study_id, "redriven") == ["triage: was queued"]


def test_sweep_sends_every_waiting_study_again_when_asked(sessions) -> None:
    """On start-up, after a worker died or the broker came back: messages may be gone."""
    with sessions() as session:
        sent = queued_study(session, at=utcnow() - seconds(60))
        waiting = queued_study(session, at=utcnow() - seconds(60), sent=False)
        running = queued_study(session, at=utcnow() - seconds(60))
        assert claim(session, study_id=running, revision=1, worker="host-a:1") is not None
        beat(session, name="host-a:1", queues="triage")
        assert len(sweep(session, now=utcnow())) == 0
        redriven = redrive_stuck(session, running_timeout=RUNNING_TIMEOUT, queued_timeout=QUEUED_TIMEOUT,
                                 worker_lost_after=WORKER_LOST, requeue_waiting=True)
    assert redriven.triage == [sent]
    assert unsent(sessions, sent, "triage") == 1 and unsent(sessions, waiting, "triage") == 1
    assert study_of(sessions, running).status == StudyStatus.TRIAGING


def test_an_abandoned_claim_is_redriven_and_its_worker_not_taken_for_hung(sessions) -> None:
    """A worker that could not give a claim back (the database was away) and has since
    finished another triage is making progress: the claim is re-driven, the worker spared."""
    with sessions() as session:
        old = queued_study(session, at=utcnow() - seconds(3600))
        later = queued_study(session, at=utcnow() - seconds(3600), sent=False)
        assert claim(session, study_id=old, revision=1, worker="host-a:1") is not None
        claimed_at = utcnow()
        beat(session, name="host-a:1", queues="triage", now=claimed_at + seconds(700))
        hung = overdue_workers(session, workers=["host-a:1"], seconds=600, now=claimed_at + seconds(700))
        assert hung == {"host-a:1"}  # no progress since the claim: hung
        assert len(sweep(session, now=claimed_at + seconds(5))) == 0

        assert claim(session, study_id=later, revision=1, worker="host-a:1") is not None
        assert record_result(session, study_id=later, revision=1, priority=Priority.ROUTINE, urgency_score=None,
                             reasons=[], scores=[])
        assert overdue_workers(session, workers=["host-a:1"], seconds=600, now=utcnow() + seconds(700)) == set()
        assert sweep(session, now=utcnow() + seconds(1)).triage == [old]
    assert study_of(sessions, old).status == StudyStatus.QUEUED
    assert stages(sessions, old, "redriven") == ["triage: was triaging"]
    assert study_of(sessions, later).status == StudyStatus.TRIAGED


def test_a_dead_workers_claim_is_redriven_after_seconds_not_the_lost_timeout(sessions) -> None:
    with sessions() as session:
        study_id = queued_study(session, at=utcnow() - seconds(3600))
        assert claim(session, study_id=study_id, revision=1, worker="host-a:1") is not None
        claimed_at = utcnow()
        # No heartbeat row: the supervisor or the sidecar removed it when the worker died.
        assert len(sweep(session, now=claimed_at + seconds(CLAIM_GRACE_SECONDS - 1))) == 0
        assert sweep(session, now=claimed_at + seconds(CLAIM_GRACE_SECONDS + 1)).triage == [study_id]

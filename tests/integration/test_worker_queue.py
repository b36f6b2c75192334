"""Workers that never lose a study: one triage per revision, the reconciliation sweep, retries
and permanent failures through the Celery task, the draft queue's order, the outbox relay.

Studies are built with the real intake (``dicom.intake.take_in`` → ``db.ingest.record_instance``),
``db.assembly.complete_quiet_studies`` and ``db.triage.claim``; times are passed as ``now=``
instead of sleeping. The sweep and the draft queue run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import json
import random
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from common import DraftStatus, Priority, Queue, StudyStatus
from db import outbox
from db.assembly import complete_quiet_studies
from db.drafts import claim_batch
from db.heartbeats import beat
from db.ingest import IngestOutcome, NewInstance, Recorded, record_instance
from db.models import Event, OutboxMessage, Score, Study, utcnow
from db.reconcile import redrive_stuck
from db.session import make_engine, make_session_factory, migrate
from db.triage import claim, record_result
from db.worklist import worklist
from dicom.intake import identify, take_in
from radtriage.settings import Settings
from radtriage.wiring import worker_config
from tests.factories import DX, radiograph
from worker.backfill import read_part10
from worker.loops import OutboxRelay
from worker.tasks import BrokerConfig, WorkerContext, create_app, register
from worker.tasks.triage import run_triage

RUNNING_TIMEOUT = 900.0
QUEUED_TIMEOUT = 600.0
WORKER_LOST = 30.0
STABLE = 5.0
BAD_J2K = "edge/966_bad_COM_marker.dcm"  # chest DX whose JPEG 2000 stream cannot be decoded


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)


# ---------------------------------------------------------------- databases and contexts


def worker_context(tmp_path: Path, model_dir: Path | None = None, **overrides) -> WorkerContext:
    """A worker's context on a fresh SQLite data folder; no MedGemma, so no drafts are queued."""
    settings = Settings(
        data_dir=tmp_path / "data",
        cxr_foundation_dir=model_dir or tmp_path / "no-model",
        medgemma_model=str(tmp_path / "no-medgemma"),
        **overrides,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    engine.dispose()
    return WorkerContext(worker_config(settings))


def ingest(ctx: WorkerContext, ds: pydicom.Dataset, *, priority: Priority | None = None) -> Recorded:
    """Take ``ds`` in exactly as the listener does (durable file, committed row)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    new = identify(ds, str(ds.file_meta.TransferSyntaxUID))
    if priority is not None:
        new = _with_priority(new, priority)
    return take_in(buffer.getvalue(), new, data_dir=ctx.data_dir, sessions=ctx.sessions)


def ingest_file(ctx: WorkerContext, path: Path, *, priority: Priority | None = None) -> Recorded:
    raw, ds, syntax = read_part10(path)
    new = identify(ds, syntax)
    if priority is not None:
        new = _with_priority(new, priority)
    return take_in(raw, new, data_dir=ctx.data_dir, sessions=ctx.sessions)


def _with_priority(new: NewInstance, priority: Priority) -> NewInstance:
    # As if the order had said so: the file's own request attributes are left untouched.
    return dataclasses.replace(new, ordered_priority=priority)


def complete_all(ctx: WorkerContext) -> list[int]:
    """The quiet timer runs out for every study received so far."""
    with ctx.sessions() as session:
        return complete_quiet_studies(session, stable_seconds=STABLE, now=utcnow() + seconds(STABLE + 1))


def study_of(sessions, study_id: int) -> Study:
    with sessions() as session:
        return session.get(Study, study_id)


def count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def stages(sessions, study_id: int, stage: str) -> list[str]:
    """The details of the study's events of ``stage``, oldest first."""
    with sessions() as session:
        return list(session.scalars(
            select(Event.detail).where(Event.study_id == study_id, Event.stage == stage).order_by(Event.id)
        ))


def snapshot(sessions, study_id: int) -> tuple:
    """Everything a task may write about a study: its row, its scores, its events, its outbox."""
    with sessions() as session:
        study = session.get(Study, study_id)
        row = (study.status, study.revision, study.priority, study.urgency_score, list(study.reasons or []),
               study.attempts, study.draft_status)
        scores = session.execute(select(Score.id, Score.revision).where(Score.study_id == study_id)).all()
        events = session.execute(select(Event.stage, Event.detail).where(Event.study_id == study_id)).all()
        messages = session.execute(select(OutboxMessage.id, OutboxMessage.task).where(
            OutboxMessage.study_id == study_id)).all()
    return row, sorted(scores), sorted(events), sorted(messages)


# ---------------------------------------------------------------- 1. one triage per revision


def test_duplicate_delivery_triages_once(tmp_path, cxr_foundation_dir, monkeypatch) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    study_id = ingest(ctx, radiograph(seed=1)).study_id
    assert complete_all(ctx) == [study_id]

    triager, unavailable = ctx.triager()
    assert triager is not None, unavailable
    real_score, inner = triager.score_png, []

    def score_and_redeliver(png):
        # The broker delivers the same task again while the first delivery is still scoring.
        inner.append(run_triage(ctx, study_id, 1))
        return real_score(png)

    monkeypatch.setattr(triager, "score_png", score_and_redeliver)
    assert run_triage(ctx, study_id, 1) == "triaged"
    assert inner == ["skipped"]
    monkeypatch.setattr(triager, "score_png", real_score)
    assert run_triage(ctx, study_id, 1) == "skipped"  # redelivered after it finished

    study = study_of(ctx.sessions, study_id)
    assert study.status == StudyStatus.TRIAGED and study.attempts == 1
    assert study.urgency_score is not None
    assert count(ctx.sessions, Score, Score.study_id == study_id) == 1  # one image, one score set
    assert len(stages(ctx.sessions, study_id, "triaged")) == 1
    assert len(stages(ctx.sessions, study_id, "triaging")) == 1


def test_task_for_a_reopened_revision_is_skipped(tmp_path, cxr_foundation_dir) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    first = radiograph(seed=1)
    study_id = ingest(ctx, first).study_id
    complete_all(ctx)
    late = ingest(ctx, radiograph(study_uid=first.StudyInstanceUID, seed=2))  # a late image: revision 2
    assert (late.outcome, late.study_id) == (IngestOutcome.REOPENED, study_id)
    before = snapshot(ctx.sessions, study_id)

    assert run_triage(ctx, study_id, 1) == "skipped"
    assert snapshot(ctx.sessions, study_id) == before  # wrote nothing

    complete_all(ctx)
    assert run_triage(ctx, study_id, 1) == "skipped"  # still stale once revision 2 is queued
    assert run_triage(ctx, study_id, 2) == "triaged"
    with ctx.sessions() as session:
        revisions = set(session.scalars(select(Score.revision).where(Score.study_id == study_id)))
    assert revisions == {2}
    triaged = stages(ctx.sessions, study_id, "triaged")
    assert len(triaged) == 1 and triaged[0].startswith("revision 2")


def test_study_reopened_during_triage_keeps_no_stale_result(tmp_path, cxr_foundation_dir, monkeypatch) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    first = radiograph(seed=1)
    study_id = ingest(ctx, first).study_id
    complete_all(ctx)
    triager, _ = ctx.triager()
    real_score = triager.score_png

    def late_image_arrives(png):
        ingest(ctx, radiograph(study_uid=first.StudyInstanceUID, seed=2))
        return real_score(png)

    monkeypatch.setattr(triager, "score_png", late_image_arrives)
    assert run_triage(ctx, study_id, 1) == "skipped"
    study = study_of(ctx.sessions, study_id)
    assert (study.status, study.revision, study.urgency_score) == (StudyStatus.RECEIVING, 2, None)
    assert count(ctx.sessions, Score, Score.study_id == study_id) == 0
    assert stages(ctx.sessions, study_id, "triaged") == []


# ---------------------------------------------------------------- 2. the reconciliation sweep


def new_instance(priority: Priority = Priority.ROUTINE) -> NewInstance:
    """What the listener records for one image of a new study (the sweep never reads the file)."""
    sop = generate_uid()
    return NewInstance(
        study_instance_uid=generate_uid(), series_instance_uid=generate_uid(), sop_instance_uid=sop,
        sop_class_uid=DX, transfer_syntax_uid=ExplicitVRLittleEndian, ordered_priority=priority,
        path=f"objects/{sop}.dcm", content_hash="blake3:" + hashlib.sha256(sop.encode()).hexdigest(), size_bytes=1,
        modality="DX", body_part="CHEST", view_position="PA",
    )


def queued_study(session, *, at: dt.datetime, priority: Priority = Priority.ROUTINE, sent: bool = True) -> int:
    """A study received at ``at``, completed by the quiet timer; ``sent``: the relay handed its
    message to the broker."""
    study_id = record_instance(session, new=new_instance(priority=priority), now=at).study_id
    assert study_id in complete_quiet_studies(session, stable_seconds=STABLE, now=at + seconds(STABLE + 1))
    if sent:
        relay_sent(session, study_id)
    return study_id


def relay_sent(session, study_id: int) -> None:
    outbox.mark_sent(session, ids=[m.id for m in outbox.pending(session) if m.study_id == study_id])


def draft_queued(session, *, at: dt.datetime, priority: Priority = Priority.ROUTINE, sent: bool = True) -> int:
    """A study triaged at ``at`` with a MedGemma draft queued."""
    study_id = queued_study(session, at=at - seconds(60), priority=priority)
    assert claim(session, study_id=study_id, revision=1, worker="triage-worker:1") is not None
    assert record_result(session, study_id=study_id, revision=1, priority=priority, urgency_score=1.0, reasons=[],
                         scores=[], draft=True, now=at)
    if sent:
        relay_sent(session, study_id)
    return study_id


def sweep(session, now: dt.datetime):
    return redrive_stuck(session, running_timeout=RUNNING_TIMEOUT, queued_timeout=QUEUED_TIMEOUT,
                         worker_lost_after=WORKER_LOST, now=now)


def unsent(sessions, study_id: int, task: str) -> int:
    return count(sessions, OutboxMessage, OutboxMessage.study_id == study_id, OutboxMessage.task == task,
                 OutboxMessage.sent_at.is_(None))


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


# ---------------------------------------------------------------- 3. failures through the Celery task


def celery_triage(ctx: WorkerContext):
    """The registered triage task on an app with the embedded broker, run eagerly."""
    app = create_app(ctx.config.broker)
    register(app, ctx)
    app.conf.task_always_eager = True
    return app.tasks[Queue.TRIAGE.task_name]


def test_poisoned_study_fails_and_never_blocks_the_others(tmp_path, cxr_foundation_dir, samples) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    task = celery_triage(ctx)
    good = [ingest(ctx, radiograph(seed=1)).study_id]
    bad = ingest_file(ctx, samples / BAD_J2K, priority=Priority.STAT).study_id
    good.append(ingest(ctx, radiograph(seed=2)).study_id)
    complete_all(ctx)

    with ctx.sessions() as session:
        messages = outbox.pending(session)
    assert [m.study_id for m in messages][0] == bad  # most urgent first: it runs before the others
    outcomes = {m.study_id: task.apply(args=[m.study_id, m.revision]).get() for m in messages}
    assert outcomes == {bad: "failed", good[0]: "triaged", good[1]: "triaged"}

    failed = study_of(ctx.sessions, bad)
    assert failed.status == StudyStatus.FAILED
    assert failed.priority == failed.ordered_priority == "STAT"
    assert len(failed.reasons) == 1 and failed.reasons[0].startswith("triage failed: ")
    assert "could not be decoded" in failed.reasons[0]
    assert stages(ctx.sessions, bad, "retry") == []  # permanent: not retried
    for study_id in good:
        study = study_of(ctx.sessions, study_id)
        assert study.status == StudyStatus.TRIAGED and study.urgency_score is not None
    with ctx.sessions() as session:
        items = {item.study_instance_uid: item for item in worklist(session)}
    item = items[failed.study_instance_uid]
    assert (item.status, item.priority, item.ordered_priority) == ("failed", "STAT", "STAT")
    assert item.reasons[0] == failed.reasons[0]


def test_unexpected_error_fails_the_study_at_once(tmp_path, cxr_foundation_dir, monkeypatch) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    task = celery_triage(ctx)
    study_id = ingest(ctx, radiograph(seed=1)).study_id
    complete_all(ctx)
    triager, _ = ctx.triager()

    def broken(png):
        raise ValueError("a bug, with patient DOE^JANE in the message")

    monkeypatch.setattr(triager, "score_png", broken)
    assert task.apply(args=[study_id, 1]).get() == "failed"
    study = study_of(ctx.sessions, study_id)
    assert (study.status, study.attempts, study.reasons) == (StudyStatus.FAILED, 1, ["triage failed: ValueError"])
    assert stages(ctx.sessions, study_id, "retry") == []
    assert all("DOE" not in detail for detail in stages(ctx.sessions, study_id, "failed"))


def _database_away() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))


def test_transient_error_releases_and_retries_until_triaged(tmp_path, cxr_foundation_dir, monkeypatch) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    task = celery_triage(ctx)
    study_id = ingest(ctx, radiograph(seed=1)).study_id
    complete_all(ctx)
    triager, _ = ctx.triager()
    real_score, seen = triager.score_png, []

    def flaky(png):
        seen.append(study_of(ctx.sessions, study_id).status)
        if len(seen) == 1:
            raise _database_away()
        return real_score(png)

    monkeypatch.setattr(triager, "score_png", flaky)
    assert task.apply(args=[study_id, 1]).get() == "triaged"
    assert seen == [StudyStatus.TRIAGING, StudyStatus.TRIAGING]  # claimed again after the release
    study = study_of(ctx.sessions, study_id)
    assert (study.status, study.attempts) == (StudyStatus.TRIAGED, 2)
    assert study.urgency_score is not None
    assert stages(ctx.sessions, study_id, "retry") == ["OperationalError"]
    assert len(stages(ctx.sessions, study_id, "triaged")) == 1
    assert count(ctx.sessions, Score, Score.study_id == study_id) == 1


@pytest.mark.parametrize("max_retries", [1, 5])
def test_transient_error_fails_the_study_when_retries_run_out(tmp_path, cxr_foundation_dir, monkeypatch,
                                                               max_retries) -> None:
    # 5 is the shipped default of task_max_retries.
    ctx = worker_context(tmp_path, cxr_foundation_dir, task_max_retries=max_retries)
    task = celery_triage(ctx)
    study_id = ingest(ctx, radiograph(seed=1)).study_id
    complete_all(ctx)
    triager, _ = ctx.triager()
    calls = []

    def always_away(png):
        calls.append(png)
        raise _database_away()

    monkeypatch.setattr(triager, "score_png", always_away)
    result = task.apply(args=[study_id, 1])
    study = study_of(ctx.sessions, study_id)
    assert study.status == StudyStatus.FAILED, f"left {study.status} after {len(calls)} attempt(s): {result.state}"
    assert result.get() == "failed"
    assert study.reasons == ["triage failed: OperationalError (retries exhausted)"]
    assert len(calls) == study.attempts == max_retries + 1
    assert stages(ctx.sessions, study_id, "retry") == ["OperationalError"] * max_retries
    assert study.priority == study.ordered_priority


# ---------------------------------------------------------------- 4. the draft queue


def test_draft_queue_serves_stat_then_urgent_then_the_oldest(sessions) -> None:
    base = utcnow() - seconds(6 * 3600)
    minutes = random.Random(5).sample(range(20), 20)  # arrival order differs from id order
    with sessions() as session:
        routine = {}
        for minute in minutes:
            routine[minute] = record_instance(session, new=new_instance(), now=base + seconds(60 * minute)).study_id
        for minute in sorted(minutes):  # each study's quiet timer runs out in its turn
            at = base + seconds(60 * minute + STABLE + 1)
            assert complete_quiet_studies(session, stable_seconds=STABLE, now=at) == [routine[minute]]
        for minute, study_id in routine.items():
            assert claim(session, study_id=study_id, revision=1, worker="t:1") is not None
            assert record_result(session, study_id=study_id, revision=1, priority=Priority.ROUTINE,
                                 urgency_score=0.5, reasons=[], scores=[], draft=True,
                                 now=base + seconds(3600 + minute))
        urgent = draft_queued(session, at=base + seconds(2 * 3600), priority=Priority.URGENT)
        stat = draft_queued(session, at=base + seconds(3 * 3600), priority=Priority.STAT)  # the newest

        order = [job.study_id for job in claim_batch(session, limit=1, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=1, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=5, worker="gpu:1")]
        order += [job.study_id for job in claim_batch(session, limit=100, worker="gpu:1")]
        assert claim_batch(session, limit=100, worker="gpu:1") == []
    oldest_first = [routine[minute] for minute in sorted(minutes)]
    assert order == [stat, urgent, *oldest_first]
    with sessions() as session:
        claimed = session.execute(select(Study.draft_status, Study.draft_claimed_by).where(Study.id.in_(order))).all()
    assert set(claimed) == {(DraftStatus.DRAFTING, "gpu:1")}
    assert all(len(stages(sessions, study_id, "drafting")) == 1 for study_id in (stat, urgent, oldest_first[0]))


def test_concurrent_draft_claims_never_share_a_study(postgres_url) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    base = utcnow() - seconds(3600)
    with sessions() as session:
        queued = [draft_queued(session, at=base + seconds(i)) for i in range(15)]

    # A claim in flight holds the three oldest: another claim takes the next ones, without waiting.
    with sessions() as holder, sessions() as other:
        held = holder.scalars(select(Study.id).where(Study.draft_status == DraftStatus.QUEUED)
                              .order_by(Study.completed_at, Study.id).limit(3).with_for_update()).all()
        assert held == queued[:3]
        other.execute(text("SET LOCAL lock_timeout = '5s'"))  # fail, not hang, if it waits for the lock
        taken = [job.study_id for job in claim_batch(other, limit=3, worker="b:1")]
        holder.rollback()
    assert taken == queued[3:6]

    # Racing workers: every remaining study is claimed by exactly one of them.
    barrier, claimed, errors = threading.Barrier(4), [], []

    def worker(name: str) -> None:
        try:
            with sessions() as session:
                barrier.wait(timeout=10)
                while jobs := claim_batch(session, limit=2, worker=name):
                    claimed.extend(job.study_id for job in jobs)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w:{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(claimed) == sorted(queued[:3] + queued[6:])
    engine.dispose()


# ---------------------------------------------------------------- 5. the outbox relay


def published(broker: BrokerConfig) -> list[tuple[str, list]]:
    """(task name, args) of each message the embedded broker holds."""
    found = []
    for path in sorted((broker.folder / "queue").glob("*.msg")):
        message = json.loads(path.read_text())
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def test_relay_keeps_messages_through_a_broker_outage(tmp_path) -> None:
    ctx = worker_context(tmp_path)
    for seed in range(3):
        ingest(ctx, radiograph(seed=seed))
    study_ids = complete_all(ctx)
    assert len(study_ids) == 3

    down = create_app(dataclasses.replace(ctx.config.broker, url="redis://127.0.0.1:1/0"))
    relay = OutboxRelay(app=down, sessions=ctx.sessions)
    assert relay.run_once() == 0
    assert relay.broker_ok is False
    assert count(ctx.sessions, OutboxMessage, OutboxMessage.sent_at.is_not(None)) == 0
    assert count(ctx.sessions, OutboxMessage) == 3

    batches: list[int] = []
    relay = OutboxRelay(app=create_app(ctx.config.broker), sessions=ctx.sessions, on_published=batches.append)
    assert relay.run_once() == 3
    assert relay.broker_ok is True
    with ctx.sessions() as session:
        assert outbox.count_pending(session) == 0
    assert sorted(published(ctx.config.broker)) == sorted((Queue.TRIAGE.task_name, [study_id, 1]) for study_id in study_ids)

    assert relay.run_once() == 0  # nothing new: nothing published twice
    assert len(published(ctx.config.broker)) == 3
    assert batches == [3]

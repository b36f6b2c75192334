"""Failures through the Celery triage task: a poisoned study fails without blocking the others,
an unexpected error fails at once, a transient one retries with backoff until it succeeds or
its retries run out.
"""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from common import Priority, Queue, StudyStatus
from db import outbox
from db.models import Score
from db.worklist import page
from tests.factories import radiograph
from tests.integration.worker_support import (
    BAD_J2K,
    complete_all,
    count,
    ingest,
    ingest_file,
    stages,
    study_of,
    worker_context,
)
from worker.tasks import WorkerContext, create_app, register


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
        items = {item.study_instance_uid: item for item in page(session, limit=200).rows}
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


"""One triage per study revision: a duplicate delivery, a task for a replaced revision and a
revision replaced during triage leave exactly one result.
"""

from __future__ import annotations

from sqlalchemy import select

from common import StudyStatus
from db.ingest import IngestOutcome
from db.models import Score
from tests.factories import radiograph
from tests.integration.worker_support import (
    complete_all,
    count,
    ingest,
    snapshot,
    stages,
    study_of,
    worker_context,
)
from worker.tasks.triage import run_triage


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


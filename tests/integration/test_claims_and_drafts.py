"""Claims that cannot loop or be stolen back, drafts that follow the newest revision, and
draft batches where one bad study holds back no other."""

from __future__ import annotations

import datetime as dt

import pytest
from PIL import Image

from common import DraftStatus, Priority, StudyStatus
from db.assembly import complete_quiet_studies
from db.drafts import DraftRecord, claim_batch, record_draft
from db.ingest import NewInstance, record_instance
from db.models import Study, utcnow
from db.triage import claim, record_result, release
from radtriage.settings import Settings
from radtriage.wiring import worker_config
from worker.tasks import WorkerContext, drafting


@pytest.fixture
def sessions(sqlite_sessions):
    return sqlite_sessions


def new_instance(n: int, study: str = "1.2.3.4", view: str = "PA") -> NewInstance:
    return NewInstance(study_instance_uid=study, series_instance_uid=f"{study}.1", sop_instance_uid=f"{study}.1.{n}",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                       ordered_priority=Priority.ROUTINE, path=f"objects/{n}.dcm", content_hash=f"blake3:{n:064d}",
                       size_bytes=1, view_position=view)


def queued_study(sessions, n: int = 1, study: str = "1.2.3.4") -> int:
    now = utcnow()
    with sessions() as session:
        study_id = record_instance(session, new=new_instance(n, study), now=now - dt.timedelta(seconds=10)).study_id
        complete_quiet_studies(session, stable_seconds=1, now=now)
    return study_id


def status(sessions, study_id: int) -> tuple[str, str | None, list[str]]:
    with sessions() as session:
        study = session.get(Study, study_id)
        return study.status, study.draft_status, list(study.reasons or [])


def test_a_study_that_keeps_killing_workers_is_failed_not_retried_forever(sessions):
    study_id = queued_study(sessions)
    with sessions() as session:
        for attempt in range(3):
            assert claim(session, study_id=study_id, revision=1, worker=f"w:{attempt}", max_attempts=3)
            session.get(Study, study_id).move_to(StudyStatus.QUEUED)  # what the sweep does after a crash
            session.commit()
        assert claim(session, study_id=study_id, revision=1, worker="w:9", max_attempts=3) is None
    state, _, reasons = status(sessions, study_id)
    assert state == "failed" and reasons == ["triage failed: gave up after 3 attempts"]


def test_release_leaves_a_claim_another_worker_took_over(sessions):
    study_id = queued_study(sessions)
    with sessions() as session:
        assert claim(session, study_id=study_id, revision=1, worker="slow:1")
        session.get(Study, study_id).move_to(StudyStatus.QUEUED)  # the sweep gave up on it
        session.commit()
        assert claim(session, study_id=study_id, revision=1, worker="fresh:2")
        assert not release(session, study_id=study_id, revision=1, worker="slow:1", reason="OperationalError")
        assert session.get(Study, study_id).status == StudyStatus.TRIAGING
        assert release(session, study_id=study_id, revision=1, worker="fresh:2", reason="OperationalError")
    assert status(sessions, study_id)[0] == "queued"


def triage_with_draft(sessions, study_id: int, revision: int) -> None:
    with sessions() as session:
        assert claim(session, study_id=study_id, revision=revision, worker="w:1")
        assert record_result(session, study_id=study_id, revision=revision, priority=Priority.ROUTINE,
                             urgency_score=1.0, reasons=[], scores=[], draft=True)


def test_a_reopened_study_is_drafted_only_after_its_new_triage(sessions):
    study_id = queued_study(sessions)
    triage_with_draft(sessions, study_id, 1)
    assert status(sessions, study_id)[1] == DraftStatus.QUEUED
    with sessions() as session:  # a late image reopens it while the draft waits
        record_instance(session, new=new_instance(2))
    assert status(sessions, study_id)[:2] == ("receiving", None)
    with sessions() as session:
        assert claim_batch(session, limit=5, worker="d:1") == []
        complete_quiet_studies(session, stable_seconds=0, now=utcnow() + dt.timedelta(seconds=1))
        assert claim_batch(session, limit=5, worker="d:1") == []  # queued for triage, not yet triaged
    triage_with_draft(sessions, study_id, 2)
    with sessions() as session:
        (job,) = claim_batch(session, limit=5, worker="d:1")
        assert job.revision == 2
        draft = DraftRecord(model_id="m", model_version="v", prompt_version="p", disclaimer="UNVERIFIED", findings="f",
                            impression="i", raw_text="r", prompt_tokens=1, new_tokens=1, seconds=0.1, batch_size=1)
        assert record_draft(session, study_id=study_id, revision=2, draft=draft, export=False)


class FlakyDrafter:
    """A drafter double for the batching logic: fails any batch holding the poisoned image."""

    model_version = "test"

    def __init__(self, poisoned):
        self.poisoned = poisoned
        self.batches = []

    def draft_batch(self, images, *, views=None):
        self.batches.append(len(images))
        if any(image is self.poisoned for image in images):
            raise ValueError("cannot process this image")
        from scoring.medgemma import Draft

        return [Draft(findings="Clear lungs.", impression="Normal.", raw_text="FINDINGS: Clear lungs.",
                      model_id="test", prompt_version="v1", prompt_tokens=10, new_tokens=5, seconds=0.1)
                for _ in images]


def test_one_bad_study_in_a_draft_batch_holds_back_no_other(sessions, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    ids = [queued_study(sessions, n, study=f"1.2.3.{n}") for n in range(3)]
    for study_id in ids:
        triage_with_draft(sessions, study_id, 1)
    images = {study_id: Image.new("RGB", (8, 8)) for study_id in ids}
    drafter = FlakyDrafter(poisoned=images[ids[1]])
    ctx = WorkerContext(worker_config(Settings(data_dir=tmp_path,
                                              database_url=f"sqlite:///{tmp_path / 'radtriage.sqlite3'}")))
    monkeypatch.setattr(ctx, "drafter", lambda: (drafter, None))
    monkeypatch.setattr(drafting, "_frontal_image", lambda _ctx, job: (images[job.study_id], "PA"))

    assert drafting.run_draft_batch(ctx) == "drafted"
    assert drafter.batches == [3, 1, 1, 1]  # the batch, then one by one
    assert [status(sessions, i)[1] for i in ids] == ["drafted", "failed", "drafted"]

"""How triage judged each finding (score kind, threshold, validated) is stored with the scores
and reaches the reader's study detail and the SR export, not only the score."""

from __future__ import annotations

from common import DISCLAIMER, DraftStatus
from db import drafts, exports
from db.models import Study
from db.study_detail import study_detail
from tests.factories import radiograph
from tests.integration.worker_support import complete_all, ingest, worker_context
from worker.tasks.triage import run_triage


def test_each_finding_carries_its_kind_threshold_and_validation_to_the_reader_and_the_sr(
        tmp_path, cxr_foundation_dir) -> None:
    ctx = worker_context(tmp_path, cxr_foundation_dir)
    study_id = ingest(ctx, radiograph(seed=3)).study_id
    complete_all(ctx)
    assert run_triage(ctx, study_id, 1) == "triaged"
    policy = ctx.policy

    with ctx.sessions() as session:
        uid = session.get(Study, study_id).study_instance_uid
        found = study_detail(session, study_uid=uid)
    assert {f.name for f in found.findings} == {r.name for r in policy.rules}
    for finding in found.findings:
        rule = policy.rule(finding.name)
        assert (finding.kind, finding.threshold, finding.validated) == ("zero-shot", rule.threshold, rule.validated)
        assert finding.positive is (finding.score >= rule.threshold)

    # The same judgement goes into the draft's SR: a draft waiting for export carries it.
    with ctx.sessions() as session:
        session.get(Study, study_id).move_draft_to(DraftStatus.QUEUED)
        session.commit()
        [job] = drafts.claim_batch(session, limit=1, worker="test:1")
        record = drafts.DraftRecord("medgemma-tiny", "1", "v1", DISCLAIMER, "FINDINGS: none.", "Normal.", "", 1, 1,
                                    0.1, 1)
        assert drafts.record_draft(session, study_id=job.study_id, revision=job.revision, draft=record, export=True)
    with ctx.sessions() as session:
        export = exports.latest_draft_job(session, study_id=study_id)
    assert {(f.name, f.kind, f.threshold) for f in export.finding_scores} == {
        (r.name, "zero-shot", r.threshold) for r in policy.rules}

"""One triage: claim the study revision, score its chest images, commit the priority."""

from __future__ import annotations

import logging
import time

import pydicom

from db import triage as db_triage
from dicom.errors import UnscorableImage
from dicom.pixels import to_model_png
from dicom.selection import choose_images
from worker.heartbeat import worker_name
from worker.tasks.context import WorkerContext

log = logging.getLogger(__name__)

MODEL_NAME = "cxr-foundation"


def run_triage(ctx: WorkerContext, study_id: int, revision: int) -> str:
    """Triage ``study_id`` at ``revision``; returns "triaged" or "skipped" (stale/duplicate)."""
    from scoring.urgency import assess

    with ctx.sessions() as session:
        study = db_triage.claim(session, study_id=study_id, revision=revision, worker=worker_name(),
                                max_attempts=ctx.config.task_max_retries + 1)
    if study is None:
        log.info("study #%d revision %d: nothing to do (stale or already triaged)", study_id, revision)
        return "skipped"

    started = time.perf_counter()
    triager, unavailable = ctx.triager()
    records: list[db_triage.ScoreRecord] = []
    if triager is None:
        # No model: the ordered priority stands and the worklist says why.
        assessment = assess(None, study.ordered_priority, ctx.policy, unavailable_reason=unavailable)
        reasons = list(assessment.reasons)
    else:
        scores, records, notes = _score_study(ctx, triager, study)
        if scores is None:
            # Nothing scorable (no chest image, undecodable pixels): a permanent failure.
            with ctx.sessions() as session:
                db_triage.record_failure(session, study_id=study.id, revision=study.revision,
                                         reason="; ".join(notes))
            log.info("study #%d revision %d failed: nothing scorable", study.id, study.revision)
            return "failed"
        assessment = assess(scores, study.ordered_priority, ctx.policy)
        reasons = list(assessment.reasons) + notes
    with ctx.sessions() as session:
        recorded = db_triage.record_result(
            session,
            study_id=study.id,
            revision=study.revision,
            priority=assessment.priority,
            urgency_score=assessment.urgency_score,
            reasons=reasons,
            scores=records,
            draft=ctx.drafts_enabled(),
        )
    if not recorded:
        return "skipped"
    log.info(
        "study #%d revision %d triaged: %s in %.2f s",
        study.id, study.revision, assessment.priority.value, time.perf_counter() - started,
    )
    return "triaged"


def _score_study(ctx: WorkerContext, triager, study: db_triage.StudyForTriage):
    """Score each chosen image; the study's score per finding is the highest over its images."""
    from scoring.heads import FindingScores, highest

    selection = choose_images(study.instances)
    notes = list(selection.notes)  # lateral-only, no chest image, each non-chest image and why
    records: list[db_triage.ScoreRecord] = []
    per_image: list[FindingScores] = []
    for info in selection.chosen:
        try:
            ds = pydicom.dcmread(ctx.data_dir / info.path)
            png = to_model_png(ds)
        except UnscorableImage as exc:
            notes.append(f"image #{info.id} not scored: {exc.reason}")
            continue
        embedding, scores = triager.score_png(png)
        per_image.append(scores)
        records.append(
            db_triage.ScoreRecord(
                model=getattr(triager, "model_name", MODEL_NAME), instance_id=info.id,
                findings=dict(scores.items()), embedding=embedding.to_bytes(compact=True),
                criteria=ctx.policy.criteria(scores),
            )
        )
    if not per_image:
        return None, records, notes or ["no image could be scored"]
    return highest(per_image), records, notes

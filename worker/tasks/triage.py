"""One triage: claim the study revision, score its chest images, commit the priority."""

from __future__ import annotations

import logging
import time

import pydicom

from common import Priority
from db import triage as db_triage
from db.non_chest import hide_from_worklist
from dicom.errors import UnscorableImage
from dicom.pixels import to_model_png
from dicom.selection import choose_images, not_chest_reason
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
    selection = choose_images(study.instances, header_of=lambda info: _header(ctx, info))
    if not selection.chosen:
        return _not_chest(ctx, study, selection)
    triager, unavailable = ctx.triager()
    records: list[db_triage.ScoreRecord] = []
    if triager is None:
        # No model: the ordered priority stands and the worklist says why.
        assessment = assess(None, study.ordered_priority, ctx.policy, unavailable_reason=unavailable)
        reasons = list(assessment.reasons)
    else:
        scores, records, notes = _score_study(ctx, triager, selection)
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


def _not_chest(ctx: WorkerContext, study: db_triage.StudyForTriage, selection) -> str:
    """No chest radiograph: the ordered priority stands, and the worklist says why, with or
    without a model; kept off the worklist when the site says so."""
    reasons = [not_chest_reason(study.instances), *selection.notes[1:]]  # [0] says "no chest radiograph" again
    with ctx.sessions() as session:
        recorded = db_triage.record_result(session, study_id=study.id, revision=study.revision,
                                           priority=Priority(study.ordered_priority), urgency_score=None,
                                           reasons=reasons, scores=[], draft=False)
    if not recorded:
        return "skipped"
    if ctx.config.hide_non_chest:
        with ctx.sessions() as session:
            hide_from_worklist(session, study_id=study.id, revision=study.revision)
    log.info("study #%d revision %d triaged: no chest radiograph%s", study.id, study.revision,
             ", kept off the worklist" if ctx.config.hide_non_chest else "")
    return "triaged"


def _header(ctx: WorkerContext, info):
    """The stored instance's header, pixels not read; None if it cannot be read (judged without it)."""
    try:
        return pydicom.dcmread(ctx.data_dir / info.path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001  (a broken header is reported where its pixels are read)
        return None


def _score_study(ctx: WorkerContext, triager, selection):
    """Score each chosen image; the study's score per finding is the highest over its images."""
    from scoring.heads import FindingScores, highest

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

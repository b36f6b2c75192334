"""One draft batch: the most urgent waiting studies, one left-padded MedGemma generation."""

from __future__ import annotations

import logging

import pydicom

from db import drafts as db_drafts
from dicom.errors import UnscorableImage
from dicom.selection import choose_images
from worker.heartbeat import worker_name
from worker.tasks.context import WorkerContext
from worker.tasks.failures import describe, is_transient, where

log = logging.getLogger(__name__)


def run_draft_batch(ctx: WorkerContext, *, last_attempt: bool = True) -> str:
    """Draft up to ``draft_batch`` studies; returns "drafted", "idle", "failed" or "disabled".

    A transient failure (out of memory, say) puts the batch back and raises, for the task to
    retry, unless this is the ``last_attempt``. Any other failure is narrowed down by drafting
    the batch one study at a time, so one bad study never holds back the others.
    """
    drafter, unavailable = ctx.drafter()
    if drafter is None:
        log.info("drafts disabled: %s", unavailable)
        return "disabled"
    with ctx.sessions() as session:
        jobs = db_drafts.claim_batch(session, limit=ctx.config.draft_batch, worker=worker_name())
    if not jobs:
        return "idle"
    ready, images, views = [], [], []
    for job in jobs:
        try:
            image, view = _frontal_image(ctx, job)
        except Exception as exc:  # unreadable file, no usable image: this study only
            _fail(ctx, job, exc.reason if isinstance(exc, UnscorableImage) else describe(exc))
            continue
        ready.append(job)
        images.append(image)
        views.append(view)
    if not ready:
        return "failed"
    try:
        drafts = drafter.draft_batch(images, views=views)
    except Exception as exc:
        if is_transient(exc) and not last_attempt:
            with ctx.sessions() as session:
                db_drafts.release(session, study_ids=[job.study_id for job in ready])
            raise
        log.warning("draft batch of %d failed (%s); drafting one by one", len(ready), where(exc))
        return _one_by_one(ctx, drafter, ready, images, views)
    for job, draft in zip(ready, drafts, strict=True):
        _store(ctx, drafter, job, draft)
    log.info("drafted %d study(ies): #%s", len(ready), ", #".join(str(job.study_id) for job in ready))
    return "drafted"


def _one_by_one(ctx: WorkerContext, drafter, jobs, images, views) -> str:
    drafted = 0
    for job, image, view in zip(jobs, images, views, strict=True):
        try:
            (draft,) = drafter.draft_batch([image], views=[view])
        except Exception as exc:
            _fail(ctx, job, describe(exc))
            continue
        _store(ctx, drafter, job, draft)
        drafted += 1
    return "drafted" if drafted else "failed"


def _store(ctx: WorkerContext, drafter, job: db_drafts.DraftJob, draft) -> None:
    if getattr(draft, "failure", None):  # generated, but unusable (e.g. a trace that never closed)
        _fail(ctx, job, draft.failure)
        return
    with ctx.sessions() as session:
        db_drafts.record_draft(
            session, study_id=job.study_id, revision=job.revision, draft=_record(draft, drafter.model_version),
            export=ctx.config.export_drafts, escalation=_escalation(ctx, job, draft),
        )


def _fail(ctx: WorkerContext, job: db_drafts.DraftJob, reason: str) -> None:
    log.warning("study #%d: no draft (%s)", job.study_id, reason)
    with ctx.sessions() as session:
        db_drafts.record_draft_failure(session, study_id=job.study_id, revision=job.revision, reason=reason)


def _frontal_image(ctx: WorkerContext, job: db_drafts.DraftJob):
    """The first image triage would score, as MedGemma's 8-bit RGB input, and its view."""
    from dicom.render import to_rgb_image

    selection = choose_images(job.instances)
    if not selection.chosen:
        raise UnscorableImage(selection.note or "no image to draft from")
    chosen = selection.chosen[0]
    return to_rgb_image(pydicom.dcmread(ctx.data_dir / chosen.path)), chosen.view_position


def _record(draft, model_version: str) -> db_drafts.DraftRecord:
    return db_drafts.DraftRecord(
        model_id=draft.model_id, model_version=model_version, prompt_version=draft.prompt_version,
        disclaimer=draft.disclaimer, findings=draft.findings, impression=draft.impression, raw_text=draft.raw_text,
        prompt_tokens=draft.prompt_tokens, new_tokens=draft.new_tokens, seconds=draft.seconds,
        batch_size=draft.batch_size,
    )


def _escalation(ctx: WorkerContext, job: db_drafts.DraftJob, draft):
    """``(priority, reasons)`` when the policy lets critical terms in a draft raise the study."""
    policy = ctx.policy
    if not getattr(policy, "escalate_on_draft_critical", False):
        return None
    from scoring.draft_escalation import escalate_from_draft

    priority, reasons = escalate_from_draft(draft.raw_text, job.priority, policy)
    return (priority.value, list(reasons)) if reasons else None

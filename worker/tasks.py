"""Celery tasks: thin wrappers that hand work to ``worker.triage`` and ``worker.drafting``."""

from __future__ import annotations

import logging
import time

from celery import Celery, Task

from common import Queue
from db import triage as db_triage
from radtriage import metrics
from worker.context import WorkerContext
from worker.drafting import run_draft_batch
from worker.failures import backoff_seconds, describe, is_transient, where
from worker.heartbeat import worker_name
from worker.triage import run_triage

log = logging.getLogger(__name__)


def register(app: Celery, context: WorkerContext) -> None:
    """Register the tasks on ``app``; they read everything else from ``context``."""
    settings = context.settings

    # shared=False: the task belongs to this app and context only; max_retries matches the
    # setting so the last transient failure is recorded as a failure, not dropped by Celery.
    options = dict(bind=True, acks_late=True, shared=False, max_retries=settings.task_max_retries,
                   soft_time_limit=settings.task_time_limit_seconds)

    @app.task(name=Queue.TRIAGE.task_name, **options)
    def triage(self: Task, study_id: int, revision: int) -> str:
        started = time.perf_counter()
        try:
            outcome = run_triage(context, study_id, revision)
        except Exception as exc:
            outcome = _triage_failed(self, context, study_id, revision, exc)
        metrics.TRIAGE_TASKS.labels(outcome=outcome).inc()
        if outcome in ("triaged", "failed"):
            metrics.TRIAGE_SECONDS.observe(time.perf_counter() - started)
        return outcome

    @app.task(name=Queue.DRAFT.task_name, **options)
    def draft(self: Task, study_id: int, revision: int) -> str:
        # The message is a wake-up call: the database decides which studies are drafted next.
        started = time.perf_counter()
        last_attempt = self.request.retries >= settings.task_max_retries
        try:
            outcome = run_draft_batch(context, last_attempt=last_attempt)
        except Exception as exc:
            if is_transient(exc) and not last_attempt:
                log.warning("draft batch failed transiently (%s); retrying", describe(exc))
                raise self.retry(countdown=backoff_seconds(self.request.retries), exc=exc)
            log.error("draft batch failed (%s)", where(exc))
            outcome = "failed"
        metrics.DRAFT_TASKS.labels(outcome=outcome).inc()
        if outcome == "drafted":
            metrics.DRAFT_SECONDS.observe(time.perf_counter() - started)
        return outcome


def _triage_failed(task: Task, context: WorkerContext, study_id: int, revision: int, exc: Exception) -> str:
    """Retry a transient failure with backoff; otherwise (or when retries are spent) fail the study."""
    reason = describe(exc)
    if is_transient(exc) and task.request.retries < context.settings.task_max_retries:
        log.warning("study #%d: transient %s, retry %d", study_id, reason, task.request.retries + 1)
        try:
            with context.sessions() as session:
                db_triage.release(session, study_id=study_id, revision=revision, worker=worker_name(), reason=reason)
        except Exception as release_exc:  # the sweep re-drives it if even this fails
            log.warning("study #%d: could not release (%s)", study_id, describe(release_exc))
        raise task.retry(countdown=backoff_seconds(task.request.retries), exc=exc)
    if not is_transient(exc):
        log.error("study #%d: permanent failure %s", study_id, where(exc))
    with context.sessions() as session:
        db_triage.record_failure(
            session, study_id=study_id, revision=revision,
            reason=reason if not is_transient(exc) else f"{reason} (retries exhausted)",
        )
    return "failed"




"""The Celery tasks: thin wrappers that hand work to ``triage.run_triage`` and ``drafting.run_draft_batch``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from celery import Celery, Task

from common import TASK_BACKOFF, Queue
from common.log_context import about_study
from db import triage as db_triage
from worker.heartbeat import worker_name
from worker.tasks.context import WorkerContext
from worker.tasks.drafting import run_draft_batch
from worker.tasks.failures import describe, is_transient, where
from worker.tasks.triage import run_triage

log = logging.getLogger(__name__)

# Called with a task's outcome and the seconds it took (metrics).
OnOutcome = Callable[[str, float], None]


def register(app: Celery, context: WorkerContext, *, on_triage: OnOutcome | None = None,
             on_draft: OnOutcome | None = None) -> None:
    """Register the tasks on ``app``; they read everything else from ``context``.

    Parameters
    ----------
    on_triage, on_draft : callable, optional
        Called after each triage task or draft batch with its outcome and duration.
    """
    config = context.config

    # shared=False: the task belongs to this app and context only; max_retries matches the
    # setting so the last transient failure is recorded as a failure, not dropped by Celery.
    options = dict(bind=True, acks_late=True, shared=False, max_retries=config.task_max_retries,
                   soft_time_limit=config.task_time_limit_seconds)

    @app.task(name=Queue.TRIAGE.task_name, **options)
    def triage(self: Task, study_id: int, revision: int) -> str:
        started = time.perf_counter()
        with about_study(study_id):  # every log line of this task names the study (structured logs)
            try:
                outcome = run_triage(context, study_id, revision)
            except Exception as exc:
                outcome = _triage_failed(self, context, study_id, revision, exc)
        if on_triage:
            on_triage(outcome, time.perf_counter() - started)
        return outcome

    @app.task(name=Queue.DRAFT.task_name, **options)
    def draft(self: Task, study_id: int, revision: int) -> str:
        # The message is a wake-up call: the database decides which studies are drafted next.
        started = time.perf_counter()
        last_attempt = self.request.retries >= config.task_max_retries
        try:
            outcome = run_draft_batch(context, last_attempt=last_attempt)
        except Exception as exc:
            if is_transient(exc) and not last_attempt:
                log.warning("draft batch failed transiently (%s); retrying", describe(exc))
                raise self.retry(countdown=TASK_BACKOFF.seconds(self.request.retries), exc=exc)
            log.error("draft batch failed (%s)", where(exc))
            outcome = "failed"
        if on_draft:
            on_draft(outcome, time.perf_counter() - started)
        return outcome


def _triage_failed(task: Task, context: WorkerContext, study_id: int, revision: int, exc: Exception) -> str:
    """Retry a transient failure with backoff; otherwise (or when retries are spent) fail the study."""
    reason = describe(exc)
    if is_transient(exc) and task.request.retries < context.config.task_max_retries:
        log.warning("study #%d: transient %s, retry %d", study_id, reason, task.request.retries + 1)
        _give_back(context, study_id, revision, reason)
        raise task.retry(countdown=TASK_BACKOFF.seconds(task.request.retries), exc=exc)
    if not is_transient(exc):
        log.error("study #%d: permanent failure %s", study_id, where(exc))
    with context.sessions() as session:
        db_triage.record_failure(
            session, study_id=study_id, revision=revision,
            reason=reason if not is_transient(exc) else f"{reason} (retries exhausted)",
        )
    return "failed"


def _give_back(context: WorkerContext, study_id: int, revision: int, reason: str) -> None:
    """Put the claim back in the queue. While the database is away this worker could do nothing
    else, so it keeps trying (up to half the task time limit): a claim left behind would wait
    for the running timeout, and its idle worker would be taken for hung."""
    deadline = time.monotonic() + context.config.task_time_limit_seconds / 2
    while True:
        try:
            with context.sessions() as session:
                db_triage.release(session, study_id=study_id, revision=revision, worker=worker_name(), reason=reason)
            return
        except Exception as exc:  # noqa: BLE001  the sweep re-drives it if this never succeeds
            if not is_transient(exc) or time.monotonic() > deadline:
                log.warning("study #%d: could not release (%s)", study_id, describe(exc))
                return
            time.sleep(1.0)

"""Celery tasks: thin wrappers that hand a study revision to ``worker.triage``."""

from __future__ import annotations

import time

from celery import Celery
from sqlalchemy.exc import OperationalError

from radtriage import metrics
from worker.app import TRIAGE_TASK
from worker.context import WorkerContext
from worker.triage import run_triage


def register(app: Celery, context: WorkerContext) -> None:
    """Register the tasks on ``app``; they read everything else from ``context``."""

    @app.task(
        name=TRIAGE_TASK,
        bind=True,
        acks_late=True,
        # A database hiccup is worth a retry; anything else is a bug to surface.
        autoretry_for=(OperationalError,),
        retry_backoff=True,
        retry_backoff_max=60,
        max_retries=8,
    )
    def triage(self, study_id: int, revision: int) -> str:
        started = time.perf_counter()
        outcome = run_triage(context, study_id, revision)
        metrics.TRIAGE_TASKS.labels(outcome=outcome).inc()
        if outcome == "triaged":
            metrics.TRIAGE_SECONDS.observe(time.perf_counter() - started)
        return outcome

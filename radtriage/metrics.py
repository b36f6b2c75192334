"""The Prometheus metrics registry; labels come from small fixed sets, never patient data.

``serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a folder before this module is imported,
so the worker process it supervises counts into the same scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from dicom import status as dicom_status

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
TRIAGE_OUTCOMES = ("triaged", "skipped", "failed")
DRAFT_OUTCOMES = ("drafted", "idle", "disabled", "failed")
BACKFILL_PHASES = ("reading", "triaging")
# The failure statuses a C-STORE can be answered with.
REFUSAL_STATUSES = tuple(code for code in dicom_status.REASONS if code != dicom_status.SUCCESS)

DICOM_ASSOCIATIONS = Counter(
    "radtriage_dicom_associations", "DICOM associations by outcome", ["result"]
)
DICOM_STORES = Counter(
    "radtriage_dicom_store_requests",
    "C-STORE requests by result (stored, duplicate, reopened, refused) and status code",
    ["result", "status"],
)
DICOM_REFUSALS = Counter(
    "radtriage_dicom_refusals",
    "Associations the listener refused, by reason (called or calling AE title, host, association limit)",
    ["reason"],
)
DICOM_STORE_SECONDS = Histogram(
    "radtriage_dicom_store_seconds",
    "C-STORE latency: from the whole dataset received to the status sent (checks, fsync, row committed)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STUDIES_COMPLETED = Counter("radtriage_studies_completed", "Studies found complete by the assembler")
OUTBOX_PUBLISHED = Counter("radtriage_outbox_published", "Outbox rows handed to the broker")
TRIAGE_TASKS = Counter("radtriage_triage_tasks", "Triage tasks by outcome", ["outcome"])
DRAFT_TASKS = Counter("radtriage_draft_tasks", "Draft batches by outcome", ["outcome"])
TASK_SECONDS = Histogram(
    "radtriage_task_seconds",
    "Time a task takes (triage: model included; draft: the whole batch's generation), by task and outcome",
    ["task", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
# Per-study time to notification, the figure asked of triage devices. Observed once per
# study revision from its committed timestamps (``radtriage.stage_metrics``).
STUDY_STAGE_SECONDS = Histogram(
    "radtriage_study_stage_seconds",
    "Per-study time between stages: first_to_last_image, last_image_to_complete, complete_to_triaged, "
    "last_image_to_priority (end to end: last image received to priority written)",
    ["stage"],
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)
STUDY_STAGES = ("first_to_last_image", "last_image_to_complete", "complete_to_triaged", "last_image_to_priority")
# A gauge per worker process, kept only while that process lives (``livemax``).
MODEL_LOADED = Gauge("radtriage_model_loaded", "1 when a worker process has this model loaded and usable, else 0",
                     ["model"], multiprocess_mode="livemax")
DATABASE_ERRORS = Counter(
    "radtriage_database_errors",
    "Database errors raised to the code, by kind (connection, operational, integrity, other)",
    ["kind"],
)
BACKFILL_PLANNED = Counter("radtriage_backfill_planned",
                           "Items radtriage backfill set out to process, by phase (reading files, triaging studies)",
                           ["phase"])
BACKFILL_DONE = Counter("radtriage_backfill_done", "Items radtriage backfill has processed, by phase", ["phase"])
SWEEP_REDRIVEN = Counter("radtriage_sweep_redriven", "Studies the reconciliation sweep queued again", ["queue"])
SR_EXPORTS = Counter("radtriage_sr_exports", "Draft reports sent to PACS as DICOM SR, by result", ["result"])


def record_store(result: str, status: int) -> None:
    DICOM_STORES.labels(result=result, status=f"0x{status:04X}").inc()


def record_triage_task(outcome: str, seconds: float) -> None:
    TRIAGE_TASKS.labels(outcome=outcome).inc()
    TASK_SECONDS.labels(task="triage", outcome=outcome).observe(seconds)


def record_draft_batch(outcome: str, seconds: float) -> None:
    DRAFT_TASKS.labels(outcome=outcome).inc()
    TASK_SECONDS.labels(task="draft", outcome=outcome).observe(seconds)


def record_stage(stage: str, seconds: float) -> None:
    STUDY_STAGE_SECONDS.labels(stage=stage).observe(max(0.0, seconds))


def record_database_error(kind: str) -> None:
    DATABASE_ERRORS.labels(kind=kind).inc()


# Every label value known in advance, so a fresh stack's panels show 0 instead of no data.
_KNOWN_LABELS: list[tuple[MetricWrapperBase, list[dict[str, str]]]] = [
    (DICOM_ASSOCIATIONS, [{"result": r} for r in ("accepted", "rejected", "aborted")]),
    (DICOM_STORES, [{"result": r, "status": "0x0000"} for r in ("stored", "duplicate", "reopened")]
     + [{"result": "refused", "status": f"0x{code:04X}"} for code in REFUSAL_STATUSES]),
    (DICOM_REFUSALS, [{"reason": r} for r in ("called_ae", "calling_ae", "host", "association_limit")]),
    (TRIAGE_TASKS, [{"outcome": o} for o in TRIAGE_OUTCOMES]),
    (DRAFT_TASKS, [{"outcome": o} for o in DRAFT_OUTCOMES]),
    (TASK_SECONDS, [{"task": "triage", "outcome": o} for o in TRIAGE_OUTCOMES]
     + [{"task": "draft", "outcome": o} for o in DRAFT_OUTCOMES]),
    (STUDY_STAGE_SECONDS, [{"stage": s} for s in STUDY_STAGES]),
    (SWEEP_REDRIVEN, [{"queue": q} for q in ("triage", "draft")]),
    (SR_EXPORTS, [{"result": r} for r in ("sent", "retry", "failed")]),
    (DATABASE_ERRORS, [{"kind": k} for k in ("connection", "operational", "integrity", "other")]),
    (BACKFILL_PLANNED, [{"phase": p} for p in BACKFILL_PHASES]),
    (BACKFILL_DONE, [{"phase": p} for p in BACKFILL_PHASES]),
]


def start_at_zero() -> None:
    """Create every known label combination, so counters read 0 before their first event."""
    for metric, label_sets in _KNOWN_LABELS:
        for labels in label_sets:
            metric.labels(**labels)


def _database_error(context) -> None:
    """SQLAlchemy's ``handle_error`` hook: count the error by kind, then let it propagate."""
    error = context.sqlalchemy_exception
    if context.is_disconnect:
        kind = "connection"
    elif isinstance(error, sa_exc.IntegrityError):
        kind = "integrity"
    elif isinstance(error, sa_exc.OperationalError):
        kind = "operational"
    else:
        kind = "other"
    record_database_error(kind)


start_at_zero()
# On the Engine class: every engine of every process that imports the metrics counts, the
# ones the worker and listener layers create themselves included.
if not event.contains(Engine, "handle_error", _database_error):
    event.listen(Engine, "handle_error", _database_error)


def record_redriven(queue: str, studies: int) -> None:
    SWEEP_REDRIVEN.labels(queue=queue).inc(studies)


def record_sr_export(result: str) -> None:
    SR_EXPORTS.labels(result=result).inc()


class GaugeCollector:
    """Gauges read at scrape time from a callable returning ``{name: (help, {label: value})}``."""

    def __init__(self, read: Callable[[], dict[str, tuple[str, str, dict[str, float]]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, (help_text, label, values) in self._read().items():
            family = GaugeMetricFamily(name, help_text, labels=[label] if label else [])
            for key, value in values.items():
                family.add_metric([key] if label else [], value)
            yield family


def render(extra: list | None = None) -> tuple[bytes, str]:
    """The Prometheus text for a scrape: every process's counters plus ``extra`` collectors."""
    if os.environ.get(MULTIPROC_ENV):
        base = CollectorRegistry()
        MultiProcessCollector(base)
    else:
        base = REGISTRY
    scrape_time = CollectorRegistry()
    for collector in extra or []:
        scrape_time.register(collector)
    return generate_latest(base) + generate_latest(scrape_time), CONTENT_TYPE_LATEST

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
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
    "Associations and presentation contexts the listener refused, by reason (AE title, host, limit, SOP class, syntax)",
    ["reason"],
)
STUDIES_COMPLETED = Counter("radtriage_studies_completed", "Studies found complete by the assembler")
OUTBOX_PUBLISHED = Counter("radtriage_outbox_published", "Outbox rows handed to the broker")
TRIAGE_TASKS = Counter("radtriage_triage_tasks", "Triage tasks by outcome", ["outcome"])
TRIAGE_SECONDS = Histogram(
    "radtriage_triage_seconds",
    "Time a triage task takes, model included",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
DRAFT_TASKS = Counter("radtriage_draft_tasks", "Draft batches by outcome", ["outcome"])
DRAFT_SECONDS = Histogram(
    "radtriage_draft_seconds",
    "Time a draft batch takes, generation included",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
SWEEP_REDRIVEN = Counter("radtriage_sweep_redriven", "Studies the reconciliation sweep queued again", ["queue"])
SR_EXPORTS = Counter("radtriage_sr_exports", "Draft reports sent to PACS as DICOM SR, by result", ["result"])


def record_store(result: str, status: int) -> None:
    DICOM_STORES.labels(result=result, status=f"0x{status:04X}").inc()


def record_triage_task(outcome: str, seconds: float) -> None:
    TRIAGE_TASKS.labels(outcome=outcome).inc()
    if outcome in ("triaged", "failed"):  # a skipped task did no work worth timing
        TRIAGE_SECONDS.observe(seconds)


def record_draft_batch(outcome: str, seconds: float) -> None:
    DRAFT_TASKS.labels(outcome=outcome).inc()
    if outcome == "drafted":
        DRAFT_SECONDS.observe(seconds)


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

"""Backfill progress as metrics: what ``radtriage backfill`` set out to do and has done, by phase.

A backfill is a process of its own. When the data folder has the metrics folder of a
running ``serve`` or ``listen``, it counts into it (``use_daemon_metrics``), so that daemon's
/metrics shows the backfill's progress while it runs, and its totals afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
Track = Callable[..., Iterator]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_daemon_metrics(data_dir: Path) -> None:
    """Count into the daemon's metrics folder, if it has one; call before prometheus_client is imported."""
    folder = data_dir.resolve() / "metrics"
    if folder.is_dir() and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = str(folder)


def counting(track: Track) -> Track:
    """``track(items, label, total)`` (a progress bar per phase) that also counts each phase's
    planned and processed items."""
    from radtriage import metrics

    def counted(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        if total:
            metrics.BACKFILL_PLANNED.labels(phase=label).inc(total)
        done = metrics.BACKFILL_DONE.labels(phase=label)
        for item in track(items, label, total):
            yield item
            done.inc()

    return counted

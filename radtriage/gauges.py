"""Gauges read at scrape time: the worklist's state from the database, and the data folder's disk."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from common import Priority, StudyStatus
from db.outbox import count_pending
from db.timings import oldest_unread_seconds
from db.worklist import queue_depths, status_counts
from radtriage import metrics


def database_gauges(reads: sessionmaker[Session], *, stat_read_limit_minutes: float) -> metrics.GaugeCollector:
    """Studies by status, queue depths, outbox backlog, oldest unread study per priority and
    the reading limit it is held against; every known label present, 0 when none."""

    def read():
        with reads() as session:
            statuses = {str(status): 0 for status in StudyStatus} | status_counts(session)
            oldest = oldest_unread_seconds(session)
            return {
                "radtriage_studies": ("Studies on the worklist by status", "status", statuses),
                "radtriage_queue_depth": ("Studies waiting for a worker, by queue", "queue", queue_depths(session)),
                "radtriage_outbox_pending": ("Outbox rows not yet handed to the broker", "",
                                             {"": count_pending(session)}),
                "radtriage_oldest_unread_seconds": (
                    "How long the oldest unread study of each effective priority has waited since its first image",
                    "priority", {str(p): seconds for p, seconds in oldest.items()}),
                "radtriage_read_limit_seconds": (
                    "The longest a study of this priority should wait unread (setting stat_read_limit_minutes)",
                    "priority", {str(Priority.STAT): stat_read_limit_minutes * 60}),
            }

    return metrics.GaugeCollector(read)


def disk_gauges(data_dir: Path) -> metrics.GaugeCollector:
    """Free and total bytes of the file system holding the received images."""

    def read():
        usage = shutil.disk_usage(data_dir)
        return {
            "radtriage_data_disk_free_bytes": ("Free bytes on the file system of the data folder", "",
                                               {"": usage.free}),
            "radtriage_data_disk_size_bytes": ("Size of the file system of the data folder", "", {"": usage.total}),
        }

    return metrics.GaugeCollector(read)

"""The work queues and the Celery task that consumes each: named here once."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    """A queue of work; outbox rows name it, workers consume it, and its task has one name."""

    TRIAGE = "triage"  # score a complete study revision
    DRAFT = "draft"  # wake a draft worker: the database says which studies are next

    @property
    def task_name(self) -> str:
        """The Celery task registered for this queue."""
        return f"radtriage.{self.value}"

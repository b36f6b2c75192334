"""Batch backfill (``radtriage backfill``): files already on disk go through intake and triage in one process."""

from worker.backfill.files import discover, read_part10
from worker.backfill.runner import Summary, run

__all__ = ["Summary", "discover", "read_part10", "run"]

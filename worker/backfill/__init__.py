"""Batch work on files already on disk: backfill (``radtriage backfill``) takes them through intake and
triage in one process; ``embed_files`` embeds labelled files for training finding heads (``radtriage probe``)."""

from worker.backfill.embed_files import embed_files
from worker.backfill.runner import Summary, run

__all__ = ["Summary", "embed_files", "run"]

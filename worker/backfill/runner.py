"""One backfill run: store files already on disk as if a PACS had pushed them, and triage their studies.

Streaming, in two overlapping steps: the intake process (``worker.backfill.intake``) walks the
paths and takes the files in, handing each study on once read through a bounded queue; this
process completes those studies (one transaction per batch) and triages them meanwhile, two at
a time. Memory stays flat however large the archive.

Resumable: a second run finds every file already stored and every study final, so it changes
nothing; a run that was interrupted is finished by the next one, which also takes back the
studies it left half-triaged (claimed by a process that no longer beats).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from common import StudyStatus
from db import backfill as db_backfill
from db.heartbeats import fresh_names
from dicom.orphans import remove_orphans
from worker.backfill.files import count_files
from worker.backfill.intake import Intake
from worker.tasks.context import WorkerContext
from worker.tasks.triage import run_triage

log = logging.getLogger(__name__)

# (items, label, total) → the same items, e.g. drawing a progress bar per phase.
Progress = Callable[[Iterable, str, int], Iterator]

WINDOW = 64  # studies the intake keeps open before handing the oldest on
BATCH = 16  # studies completed in one transaction, then triaged
TRIAGERS = 2  # studies triaged at once: while one waits on a commit or the model, the other runs
ORPHAN_AGE = 60.0  # seconds: a younger file without a row may be one a running daemon is recording


@dataclasses.dataclass
class Summary:
    files: int = 0
    stored: int = 0
    already_stored: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason → files
    studies: int = 0
    scored: int = 0
    not_scored: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason → studies
    failed: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason → studies
    # Every file skipped, or of a study that failed: (path, "skipped" | "failed", reason), for --report.
    problems: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)


def run(
    ctx: WorkerContext,
    paths: Iterable[Path],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    window: int = WINDOW,
    batch: int = BATCH,
    lost_after: float = 30.0,
) -> Summary:
    """Ingest and triage ``paths``; ``progress(iterable, label, total)`` wraps each phase
    ("reading": files, "triaging": studies, its total estimated from the studies read so far).
    A study left triaging by a process silent for ``lost_after`` seconds is triaged again.

    Raises
    ------
    FileNotFoundError
        A given path does not exist (before anything is read).
    """
    progress = progress or (lambda it, _label, _total: iter(it))
    paths = list(paths)
    total_files = count_files(paths)
    db_backfill.relax_sqlite_sync(ctx.sessions)
    if not dry_run:
        # What an interrupted run left between a file and its row (a daemon's start-up does the same).
        remove_orphans(ctx.data_dir, ctx.sessions, min_age=ORPHAN_AGE)
    summary = Summary()
    intake = Intake(ctx.config, paths, window=window, dry_run=dry_run).start()
    try:
        reading = threading.Thread(target=_drain, args=(progress(intake.files_read(), "reading", total_files),),
                                   name="backfill-reading", daemon=True)
        reading.start()
        if not dry_run:
            _triage(ctx, summary, intake, progress, total_files, batch, lost_after)
        counts = intake.finish()
        reading.join()
    finally:
        intake.stop()
    summary.files, summary.stored, summary.already_stored = counts.files, counts.stored, counts.already_stored
    summary.skipped = counts.skipped
    summary.problems[:0] = [(path, "skipped", reason) for path, reason in counts.skipped_files]
    return summary


def _drain(items: Iterable) -> None:
    for _ in items:
        pass


def _triage(ctx: WorkerContext, summary: Summary, intake: Intake, progress: Progress, total_files: int,
            batch: int, lost_after: float) -> None:
    studies = intake.studies()
    first = next(studies, None)
    if first is None:
        return
    # The intake has seen a window of studies by now: enough to estimate how many the files hold.
    estimate = max(1, round(total_files * intake.studies_seen / max(1, intake.files)))
    pending: list[tuple[int, list[str]]] = []
    with concurrent.futures.ThreadPoolExecutor(TRIAGERS, thread_name_prefix="backfill-triage") as triagers:
        for item in progress(_chain(first, studies), "triaging", estimate):
            pending.append(item)
            if len(pending) >= batch or intake.idle():
                _triage_batch(ctx, summary, pending, lost_after, triagers)
                pending = []
        if pending:
            _triage_batch(ctx, summary, pending, lost_after, triagers)


def _chain(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _triage_batch(ctx: WorkerContext, summary: Summary, studies: list[tuple[int, list[str]]],
                  lost_after: float, triagers: concurrent.futures.Executor) -> None:
    files_of = dict(studies)
    with ctx.sessions() as session:
        alive = fresh_names(session, within_seconds=lost_after)
        waiting = db_backfill.complete_for_backfill(session, study_ids=list(files_of), alive=alive)
    list(triagers.map(lambda study: run_triage(ctx, *study), waiting))
    with ctx.sessions() as session:
        states = db_backfill.final_states(session, study_ids=list(files_of))
    summary.studies += len(files_of)
    _tally(summary, states, files_of)


def _tally(summary: Summary, states, files_of: dict[int, list[str]]) -> None:
    for study_id, (status, score, reasons) in states.items():
        if status == StudyStatus.FAILED:
            reason = reasons[0] if reasons else "failed"
            summary.failed[reason] += 1
            summary.problems += [(path, "failed", reason) for path in files_of[study_id]]
        elif score is not None:
            summary.scored += 1
        else:
            summary.not_scored[reasons[0] if reasons else status] += 1

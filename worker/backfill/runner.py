"""One backfill run: store files already on disk as if a PACS had pushed them, and triage their studies.

Streaming, in two overlapping steps joined by a bounded queue, so memory stays flat however
large the archive: a reader thread walks the paths lazily and takes each file in through the
listener's own intake (identify, durable store, row); once a study's files have been read it
hands the study on. The calling thread completes those studies (one transaction per batch) and
triages them in this process meanwhile. A study counts as read when ``window`` other studies
have been seen since its last file (archives keep a study's files together; a file that comes
later still is taken in and reopens the study, as a late C-STORE would).

Resumable: a second run finds every file already stored and every study final, so it changes
nothing; a run that was interrupted is finished by the next one, which also takes back the
studies it left half-triaged (claimed by a process that no longer beats).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from common import StudyStatus
from db import backfill as db_backfill
from db.heartbeats import fresh_names
from db.ingest import IngestOutcome
from dicom.acceptance import identify
from dicom.errors import InvalidDataset
from dicom.intake import take_in
from dicom.orphans import remove_orphans
from worker.backfill.files import count_files, iter_files, read_part10
from worker.tasks.context import WorkerContext
from worker.tasks.triage import run_triage

log = logging.getLogger(__name__)

# (items, label, total) → the same items, e.g. drawing a progress bar per phase.
Progress = Callable[[Iterable, str, int], Iterator]

WINDOW = 64  # studies the reader keeps open before handing the oldest on
BATCH = 16  # studies completed in one transaction, then triaged
QUEUE_STUDIES = 128  # studies read and waiting for triage, at most
TAKERS = 4  # files stored at once
TRIAGERS = 2  # studies triaged at once
ORPHAN_AGE = 60.0  # seconds: a younger file without a row may be one a running daemon is recording
_DONE = object()  # the reader's last item


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

    def skip(self, path: Path, reason: str) -> None:
        self.skipped[reason] += 1
        self.problems.append((str(path), "skipped", reason))


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
    reader = _Reader(ctx, summary, window=window, dry_run=dry_run)
    thread = threading.Thread(target=reader.run, args=(progress(iter_files(paths), "reading", total_files),),
                              name="backfill-reader", daemon=True)
    thread.start()
    try:
        if not dry_run:
            _triage(ctx, summary, reader, progress, total_files, batch, lost_after)
        thread.join()
    finally:
        reader.stop.set()
    if reader.error is not None:
        raise reader.error
    return summary


class _Reader:
    """Takes files in and hands each study on, with its files, once it is read."""

    def __init__(self, ctx: WorkerContext, summary: Summary, *, window: int, dry_run: bool) -> None:
        self.ctx, self.summary, self.window, self.dry_run = ctx, summary, window, dry_run
        self.handoff: queue.Queue = queue.Queue(maxsize=QUEUE_STUDIES)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.studies_seen = 0
        self._lock = threading.Lock()  # the intake threads count into one summary

    def run(self, files: Iterable[Path]) -> None:
        open_studies: collections.OrderedDict[int, list[str]] = collections.OrderedDict()
        try:
            for path, study_id in self._taken_in(files):
                if study_id is None:
                    continue
                if study_id not in open_studies:
                    self.studies_seen += 1
                open_studies.setdefault(study_id, []).append(str(path))
                open_studies.move_to_end(study_id)
                if len(open_studies) > self.window:
                    self._put(open_studies.popitem(last=False))
            while open_studies:
                self._put(open_studies.popitem(last=False))
        except BaseException as exc:  # noqa: BLE001  (re-raised by run() in the calling thread)
            self.error = exc
        finally:
            self._put(_DONE)

    def _taken_in(self, files: Iterable[Path]) -> Iterator[tuple[Path, int | None]]:
        """(path, study id) per file in order, ``TAKERS`` files taken in at once: storing is mostly
        waiting for fsync, which threads overlap (at most ``2 * TAKERS`` files in flight)."""
        in_flight: collections.deque = collections.deque()
        with concurrent.futures.ThreadPoolExecutor(TAKERS, thread_name_prefix="backfill-intake") as pool:
            for path in files:
                in_flight.append((path, pool.submit(self._take_in, path)))
                if len(in_flight) >= 2 * TAKERS:
                    path, future = in_flight.popleft()
                    yield path, future.result()
            while in_flight:
                path, future = in_flight.popleft()
                yield path, future.result()

    def _take_in(self, path: Path) -> int | None:
        """The file's study id once stored (None: skipped or a dry run); runs on the intake threads."""
        accepted = self.ctx.config.accepted_sop_classes  # as the listener
        try:
            raw, ds, syntax = read_part10(path)
            new = identify(ds, syntax, accepted_sop_classes=accepted)  # the listener's rule
        except InvalidDataset as exc:
            self._count(path, skipped=str(exc))
            return None
        if self.dry_run:
            self._count(path, stored=True)
            return None
        recorded = take_in(raw, new, data_dir=self.ctx.data_dir, sessions=self.ctx.sessions)
        self._count(path, stored=recorded.outcome is not IngestOutcome.DUPLICATE)
        return recorded.study_id

    def _count(self, path: Path, *, stored: bool = False, skipped: str | None = None) -> None:
        with self._lock:
            self.summary.files += 1
            if skipped is not None:
                self.summary.skip(path, skipped)
            elif stored:
                self.summary.stored += 1
            else:
                self.summary.already_stored += 1

    def _put(self, item) -> None:
        # Blocks while triage is behind (the queue is the memory bound); gives up when the run stops.
        while True:
            try:
                self.handoff.put(item, timeout=0.5)
                return
            except queue.Full:
                if self.stop.is_set():
                    if item is _DONE:
                        return
                    raise InterruptedError("backfill stopped") from None

    def studies(self) -> Iterator[tuple[int, list[str]]]:
        """The studies read, as they are handed on, until the reader is done."""
        while (item := self.handoff.get()) is not _DONE:
            yield item


def _triage(ctx: WorkerContext, summary: Summary, reader: _Reader, progress: Progress, total_files: int,
            batch: int, lost_after: float) -> None:
    studies = reader.studies()
    first = next(studies, None)
    if first is None:
        return
    # The reader has seen a window of studies by now: enough to estimate how many the files hold.
    estimate = max(1, round(total_files * reader.studies_seen / max(1, reader.summary.files)))
    pending: list[tuple[int, list[str]]] = []
    with concurrent.futures.ThreadPoolExecutor(TRIAGERS, thread_name_prefix="backfill-triage") as triagers:
        for item in progress(_chain(first, studies), "triaging", estimate):
            pending.append(item)
            if len(pending) >= batch or reader.handoff.empty():
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
    # Two at a time: while one waits on its commit or the model, the other runs.
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

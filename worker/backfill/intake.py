"""The reading side of a backfill, in a process of its own: walk the paths lazily, take each file
in through the listener's own intake (identify, durable store, row) on a few threads, and hand
each study on, with its files, once it has been read.

A process, not a thread of the backfill: intake is mostly Python (parsing, hashing, SQL) and so
is triage around the model, and in one process both would share one core through the GIL. The
two are joined by a bounded queue, so the reader never runs more than a queue's worth of studies
ahead of triage and memory stays flat however large the archive. A study counts as read when
``window`` other studies have been seen since its last file (archives keep a study's files
together; a file that comes later still is taken in and reopens the study, as a late C-STORE
would).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import pickle
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from db import backfill as db_backfill
from db.ingest import IngestOutcome
from dicom.acceptance import identify, read_file
from dicom.errors import InvalidDataset
from dicom.intake import take_in
from worker.backfill.files import iter_files
from worker.tasks.config import WorkerConfig
from worker.tasks.context import WorkerContext

log = logging.getLogger(__name__)

TAKERS = 4  # files stored at once: storing is mostly waiting for fsync, which threads overlap
QUEUE_STUDIES = 128  # studies read and not yet triaged, at most
_POLL = 0.5  # seconds between looks at a process that may have ended


@dataclasses.dataclass
class FileCounts:
    """What the intake did with the files (merged into the backfill's summary at the end)."""

    files: int = 0
    stored: int = 0
    already_stored: int = 0
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # reason → files
    skipped_files: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (path, reason)


class Intake:
    """The backfill's side of the intake process: started with :meth:`start`, read through
    :meth:`files_read` and :meth:`studies`, ended with :meth:`finish` (or :meth:`stop`)."""

    def __init__(self, config: WorkerConfig, paths: list[Path], *, window: int, dry_run: bool) -> None:
        context = multiprocessing.get_context("spawn")  # nothing of this process (models, pools) is inherited
        self._messages = context.Queue(maxsize=4 * QUEUE_STUDIES)
        self._process = context.Process(target=_main, name="backfill-intake", daemon=True,
                                        args=(config, paths, window, dry_run, self._messages, os.getpid()))
        self._ticks: queue.SimpleQueue = queue.SimpleQueue()
        self._studies: queue.Queue = queue.Queue(maxsize=QUEUE_STUDIES)
        self._dispatcher = threading.Thread(target=self._dispatch, name="backfill-intake-messages", daemon=True)
        self.files = 0  # read so far
        self.studies_seen = 0
        self._result: FileCounts | BaseException | None = None

    def start(self) -> Intake:
        self._process.start()
        self._dispatcher.start()
        return self

    def files_read(self) -> Iterator[None]:
        """Once per file read, until the intake is done (for a progress bar)."""
        while self._ticks.get() is not None:
            yield None

    def studies(self) -> Iterator[tuple[int, list[str]]]:
        """(study id, its files) of each study read, until the intake is done."""
        while (item := self._studies.get()) is not None:
            yield item

    def idle(self) -> bool:
        """Whether no study read waits for triage right now."""
        return self._studies.empty()

    def finish(self) -> FileCounts:
        """Wait for the intake to end; what it did with the files.

        Raises
        ------
        BaseException
            What ended the intake (re-raised here), or RuntimeError if its process died.
        """
        self._dispatcher.join()
        self._process.join()
        if isinstance(self._result, BaseException):
            raise self._result
        return self._result

    def stop(self) -> None:
        """End the intake process now (the backfill is failing or was interrupted)."""
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)

    def _dispatch(self) -> None:
        """Splits the process's messages: file ticks for the bar, studies for triage."""
        try:
            while True:
                try:
                    message = self._messages.get(timeout=_POLL)
                except queue.Empty:
                    if not self._process.is_alive():
                        self._result = RuntimeError(f"the backfill intake process ended (exit code "
                                                    f"{self._process.exitcode}) before it was done")
                        return
                    continue
                kind = message[0]
                if kind == "read":
                    self.files += 1
                    self._ticks.put(True)
                elif kind == "study":
                    self.studies_seen = message[3]
                    self._studies.put((message[1], message[2]))
                else:  # "done" or "error": the last message
                    self._result = message[1]
                    return
        finally:
            self._ticks.put(None)
            self._studies.put(None)


def _main(config: WorkerConfig, paths: list[Path], window: int, dry_run: bool, messages, parent: int) -> None:
    """The intake process: reads everything, sends ("read",) per file, ("study", id, files, seen)
    per study, then ("done", FileCounts) or ("error", exception)."""
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    ctx = WorkerContext(config)
    db_backfill.relax_sqlite_sync(ctx.sessions)
    reader = _Reader(ctx, window=window, dry_run=dry_run, send=messages.put)
    try:
        reader.run(iter_files(paths))
        result = ("done", reader.counts)
    except BaseException as exc:  # noqa: BLE001  re-raised by the backfill in its own process
        result = ("error", exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
    messages.put(result)
    messages.close()
    messages.join_thread()


def _exit_with(parent: int) -> None:
    """A backfill killed outright (SIGKILL, the OOM killer) must not leave its intake running."""
    while os.getppid() == parent:
        threading.Event().wait(_POLL)
    os._exit(1)


def _picklable(exc: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001  any failure means: send a plain copy instead
        return False
    return True


class _Reader:
    """Takes files in (``TAKERS`` at once) and sends each study on once it is read."""

    def __init__(self, ctx: WorkerContext, *, window: int, dry_run: bool, send: Callable[[tuple], None]) -> None:
        self.ctx, self.window, self.dry_run, self.send = ctx, window, dry_run, send
        self.counts = FileCounts()
        self._lock = threading.Lock()  # the intake threads count together

    def run(self, files: Iterable[Path]) -> None:
        open_studies: collections.OrderedDict[int, list[str]] = collections.OrderedDict()
        seen = 0
        for path, study_id in self._taken_in(files):
            self.send(("read",))
            if study_id is None:
                continue
            if study_id not in open_studies:
                seen += 1
            open_studies.setdefault(study_id, []).append(str(path))
            open_studies.move_to_end(study_id)
            if len(open_studies) > self.window:
                self.send(("study", *open_studies.popitem(last=False), seen))  # blocks while triage is behind
        while open_studies:
            self.send(("study", *open_studies.popitem(last=False), seen))

    def _taken_in(self, files: Iterable[Path]) -> Iterator[tuple[Path, int | None]]:
        """(path, study id) per file in order (at most ``2 * TAKERS`` files in flight)."""
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
        """The file's study id once stored (None: skipped or a dry run)."""
        accepted = self.ctx.config.accepted_sop_classes  # as the listener
        try:
            part = read_file(path)
            raw, ds, syntax = part.parts, part.dataset, part.transfer_syntax
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
            self.counts.files += 1
            if skipped is not None:
                self.counts.skipped[skipped] += 1
                self.counts.skipped_files.append((str(path), skipped))
            elif stored:
                self.counts.stored += 1
            else:
                self.counts.already_stored += 1

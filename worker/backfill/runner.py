"""One backfill run: store files already on disk as if a PACS had pushed them, then triage their studies.

Files go through the listener's own intake (identify, durable store, row), the studies they
belong to are completed at once and triaged in this process. A second run finds every file
already stored and every study final, so it changes nothing; an interrupted run is finished
by the next one.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from common import StudyStatus
from db import backfill as db_backfill
from db.ingest import IngestOutcome
from dicom.acceptance import identify
from dicom.errors import InvalidDataset
from dicom.intake import take_in
from worker.backfill.files import discover, read_part10
from worker.tasks.context import WorkerContext
from worker.tasks.triage import run_triage

log = logging.getLogger(__name__)


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
    progress: Callable[[Iterable, str, int], Iterator] | None = None,
) -> Summary:
    """Ingest and triage ``paths``; ``progress(iterable, label, total)`` wraps each phase."""
    progress = progress or (lambda it, _label, _total: iter(it))
    files = discover(paths)
    summary = Summary(files=len(files))
    accepted = ctx.config.accepted_sop_classes  # as the listener
    study_ids: list[int] = []
    files_of: dict[int, list[Path]] = collections.defaultdict(list)  # study id → its files read here
    for path in progress(files, "reading", len(files)):
        try:
            raw, ds, syntax = read_part10(path)
            new = identify(ds, syntax, accepted_sop_classes=accepted)  # the listener's rule
        except InvalidDataset as exc:
            summary.skip(path, str(exc))
            continue
        if dry_run:
            summary.stored += 1
            continue
        recorded = take_in(raw, new, data_dir=ctx.data_dir, sessions=ctx.sessions)
        if recorded.outcome is IngestOutcome.DUPLICATE:
            summary.already_stored += 1
        else:
            summary.stored += 1
        study_ids.append(recorded.study_id)
        files_of[recorded.study_id].append(path)
    if dry_run:
        return summary

    study_ids = list(dict.fromkeys(study_ids))
    summary.studies = len(study_ids)
    with ctx.sessions() as session:
        waiting = db_backfill.complete_for_backfill(session, study_ids=study_ids)
    for study_id, revision in progress(waiting, "triaging", len(waiting)):
        run_triage(ctx, study_id, revision)
    with ctx.sessions() as session:
        states = db_backfill.final_states(session, study_ids=study_ids)
    _tally(summary, states, files_of)
    return summary


def _tally(summary: Summary, states, files_of: dict[int, list[Path]]) -> None:
    for study_id, (status, score, reasons) in states.items():
        if status == StudyStatus.FAILED:
            reason = reasons[0] if reasons else "failed"
            summary.failed[reason] += 1
            summary.problems += [(str(path), "failed", reason) for path in files_of[study_id]]
        elif score is not None:
            summary.scored += 1
        else:
            summary.not_scored[reasons[0] if reasons else status] += 1

"""``radtriage backfill``: triage files already on disk as if a PACS had pushed them.

Files go through the listener's own intake (identify, durable store, row), the studies they
belong to are completed at once and triaged in this process. A second run finds every file
already stored and every study final, so it changes nothing; an interrupted run is finished
by the next one.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite
from pydicom.uid import ImplicitVRLittleEndian

from common import StudyStatus
from db import backfill as db_backfill
from db.ingest import IngestOutcome
from dicom.errors import InvalidDataset
from dicom.intake import identify, take_in
from worker.context import WorkerContext
from worker.triage import run_triage

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


def discover(paths: Iterable[Path]) -> list[Path]:
    """Every file under the given folders, the instances a DICOMDIR names, and plain files."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR")
        elif path.name.upper() == "DICOMDIR":
            found += _dicomdir_files(path)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return list(dict.fromkeys(found))


def _dicomdir_files(path: Path) -> list[Path]:
    from pydicom.fileset import FileSet

    return [Path(instance.path) for instance in FileSet(pydicom.dcmread(path))]


def read_part10(path: Path) -> tuple[bytes, pydicom.Dataset, str]:
    """The file as Part 10 bytes with its dataset and transfer syntax.

    A file without a meta header is given one (implicit VR little endian, as the standard
    presumes), so it is stored the way a C-STORE of it would be.

    Raises
    ------
    InvalidDataset
        The file is not DICOM or cannot be parsed.
    """
    raw = path.read_bytes()
    try:
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
        syntax = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) else None
        if raw[128:132] != b"DICM" or not syntax:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = syntax = syntax or ImplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            buffer = DicomBytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
            raw = buffer.getvalue()
        len(ds)  # parse every top-level element now, not later in the worker
    except (InvalidDicomError, AttributeError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise InvalidDataset(f"not a readable DICOM file ({type(exc).__name__})") from exc
    return raw, ds, str(syntax)


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
    accepted = set(ctx.settings.dicom_accepted_sop_classes.split(","))  # as the listener
    study_ids: list[int] = []
    for path in progress(files, "reading", len(files)):
        try:
            raw, ds, syntax = read_part10(path)
            new = identify(ds, syntax)
        except InvalidDataset as exc:
            summary.skipped[str(exc)] += 1
            continue
        if new.sop_class_uid not in accepted:
            summary.skipped["not a radiograph (SOP class not accepted)"] += 1
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
    _tally(summary, states)
    return summary


def _tally(summary: Summary, states) -> None:
    for status, score, reasons in states.values():
        if status == StudyStatus.FAILED:
            summary.failed[reasons[0] if reasons else "failed"] += 1
        elif score is not None:
            summary.scored += 1
        else:
            summary.not_scored[reasons[0] if reasons else status] += 1

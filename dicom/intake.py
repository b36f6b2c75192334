"""Taking one instance in: identify it, store its bytes durably, commit its row.

Shared by the C-STORE handler and ``radtriage backfill``, so a file read from disk goes
exactly the way a pushed one does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pydicom import Dataset
from sqlalchemy.orm import Session, sessionmaker

from db.ingest import NewInstance, Recorded, record_instance
from dicom.errors import InvalidDataset, MissingAttribute
from dicom.order import ordered_priority
from dicom.storage import remove_stored, store_bytes


def identify(ds: Dataset, transfer_syntax: str) -> NewInstance:
    """The attributes the worklist needs from ``ds``.

    Raises
    ------
    MissingAttribute
        Study, Series or SOP Instance UID, or SOP Class UID, is absent or empty.
    InvalidDataset
        An attribute cannot be parsed.
    """
    try:
        return _identify(ds, transfer_syntax)
    except InvalidDataset:
        raise
    except Exception as exc:
        raise InvalidDataset(f"dataset could not be parsed ({type(exc).__name__})") from exc


def _identify(ds: Dataset, transfer_syntax: str) -> NewInstance:
    def required(keyword: str) -> str:
        value = str(ds.get(keyword, "") or "").strip()
        if not value:
            raise MissingAttribute(keyword)
        return value

    def optional(keyword: str, limit: int = 16) -> str | None:
        value = str(ds.get(keyword, "") or "").strip()
        return value[:limit] or None

    return NewInstance(
        study_instance_uid=required("StudyInstanceUID"),
        series_instance_uid=required("SeriesInstanceUID"),
        sop_instance_uid=required("SOPInstanceUID"),
        sop_class_uid=required("SOPClassUID"),
        transfer_syntax_uid=transfer_syntax,
        ordered_priority=ordered_priority(ds),
        accession_number=optional("AccessionNumber"),
        modality=optional("Modality"),
        body_part=optional("BodyPartExamined"),
        view_position=optional("ViewPosition"),
        path="",
        sha256="",
        size_bytes=0,
    )


def take_in(raw: bytes, new: NewInstance, *, data_dir: Path, sessions: sessionmaker[Session]) -> Recorded:
    """Store ``raw`` (a Part 10 file) durably, then commit ``new``; nothing is kept if either fails.

    Raises
    ------
    OSError
        The file could not be written (disk full, permissions).
    sqlalchemy.exc.SQLAlchemyError
        The row could not be committed; the file just written is removed.
    """
    stored = store_bytes(data_dir, raw)
    new = dataclasses.replace(new, path=stored.relative_path, sha256=stored.sha256, size_bytes=stored.size_bytes)
    try:
        with sessions() as session:
            return record_instance(session, new=new)
    except BaseException:
        remove_stored(data_dir, stored)
        raise

"""Taking one instance in: check it, store its bytes durably, commit its row.

Shared by the C-STORE handler and ``radtriage backfill``, so a file read from disk goes
exactly the way a pushed one does. Only the header is read (pydicom decodes values
lazily); the bytes are stored exactly as received. Each failed check raises the error
whose status ``dicom.status`` answers: unparsable → 0xC210, identifying UID missing or
malformed → 0xC220, dataset not matching its SOP class → 0xA900.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import UID
from sqlalchemy.orm import Session, sessionmaker

from db.ingest import IngestOutcome, InstanceHeader, Recorded, record_instance
from dicom.errors import DatasetMismatch, InvalidDataset, MissingAttribute
from dicom.order import ordered_priority
from dicom.storage import Parts, content_hash, remove_stored, store_bytes
from dicom.views import expected_instances, view_of

# PS3.5 9.1: digits and dots, 64 characters at most. Leading zeros in a component are
# invalid too, but legacy modalities send them and refusing those images helps nobody.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PIXEL_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel")


def identify(ds: Dataset, transfer_syntax: str, *, sop_class_uid: str | None = None) -> InstanceHeader:
    """Check ``ds`` and read what the database records (only the header is read).

    Parameters
    ----------
    ds : pydicom.Dataset
        The received dataset (``event.dataset``) or a file read from disk.
    transfer_syntax : str
        The negotiated transfer syntax, or the file's.
    sop_class_uid : str, optional
        A C-STORE request's Affected SOP Class UID; the dataset's must be the same. (Its
        Affected SOP Instance UID may differ: senders copy stale file meta; the dataset's
        own UID is what is recorded.)

    Returns
    -------
    InstanceHeader
        Everything the header says; ``take_in`` adds where the bytes are stored.

    Raises
    ------
    MissingAttribute
        Study, Series or SOP Instance UID missing, empty or not a valid UID (0xC220).
    DatasetMismatch
        SOP Class UID missing or not the request's, or an image class lacks its Image
        Pixel module (0xA900).
    InvalidDataset
        The dataset cannot be parsed (0xC210).
    """
    try:
        return _identify(ds, transfer_syntax, sop_class_uid)
    except InvalidDataset:
        raise
    except Exception as exc:  # pydicom raises many kinds while decoding a broken value
        raise InvalidDataset.unparsable(exc) from exc


def _identify(ds: Dataset, transfer_syntax: str, sop_class_uid: str | None) -> InstanceHeader:
    study = _uid(ds, "StudyInstanceUID")
    series = _uid(ds, "SeriesInstanceUID")
    instance = _uid(ds, "SOPInstanceUID")
    sop_class = _text(ds, "SOPClassUID")
    if not sop_class:
        raise DatasetMismatch("SOPClassUID is missing")
    if sop_class_uid is not None and sop_class != sop_class_uid.strip():
        raise DatasetMismatch("SOPClassUID differs from the request's Affected SOP Class UID")
    if "Image Storage" in UID(sop_class).name:
        _check_image_pixel_module(ds, UID(transfer_syntax))
    return InstanceHeader(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=instance,
        sop_class_uid=sop_class,
        transfer_syntax_uid=transfer_syntax,
        ordered_priority=ordered_priority(ds),
        accession_number=_text(ds, "AccessionNumber")[:16] or None,
        modality=_text(ds, "Modality")[:16] or None,
        body_part=_text(ds, "BodyPartExamined")[:16] or None,
        view_position=_text(ds, "ViewPosition")[:16] or None,
        view=view_of(ds),
        expected_instances=expected_instances(ds),
    )


def _check_image_pixel_module(ds: Dataset, transfer_syntax: UID) -> None:
    """The Image Pixel module (PS3.3 C.7.6.3) is mandatory in every image storage class."""
    if "PixelData" not in ds:
        raise DatasetMismatch("an image storage SOP class without Pixel Data")
    values = {}
    for keyword in _PIXEL_KEYWORDS:
        value = ds.get(keyword)
        if not isinstance(value, int) or value <= 0:
            raise DatasetMismatch(f"Image Pixel module attribute {keyword} is missing or invalid")
        values[keyword] = value
    if not _text(ds, "PhotometricInterpretation"):
        raise DatasetMismatch("Image Pixel module attribute PhotometricInterpretation is missing")
    if not transfer_syntax.is_compressed:
        # Native pixel data has a known length; a shorter one is a truncated image.
        frames = _frames(ds)
        bits = values["Rows"] * values["Columns"] * values["SamplesPerPixel"] * values["BitsAllocated"] * frames
        if _value_length(ds, "PixelData") < (bits + 7) // 8:
            raise DatasetMismatch("Pixel Data is shorter than its Rows, Columns and Bits Allocated require")


def _value_length(ds: Dataset, keyword: str) -> int:
    """A value's length in bytes, without reading it when its read was deferred (the listener
    parses only the header: a 10 MB Pixel Data stays in the receive buffer)."""
    element = ds.get_item(keyword, keep_deferred=True)
    if element.value is None:
        return int(element.length)
    return len(element.value)


def _frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError) as exc:
        raise DatasetMismatch("NumberOfFrames is not an integer") from exc


def _uid(ds: Dataset, keyword: str) -> str:
    value = _text(ds, keyword)
    if not value:
        raise MissingAttribute(keyword)
    if len(value) > 64 or not _UID.match(value):
        raise MissingAttribute(keyword, "is not a valid UID")
    return value


def _text(ds: Dataset, keyword: str) -> str:
    # Some senders pad UIDs with NUL or spaces; neither is part of the value.
    return str(ds.get(keyword, "") or "").strip().rstrip("\x00").strip()


def take_in(raw: Parts, header: InstanceHeader, *, data_dir: Path, sessions: sessionmaker[Session]) -> Recorded:
    """Store ``raw`` (a Part 10 file, as pieces) durably, then commit its row; nothing is kept if either fails.

    Raises
    ------
    OSError
        The file could not be written (disk full, permissions).
    sqlalchemy.exc.SQLAlchemyError
        The row could not be committed; the file just written is removed.
    """
    hash_ = content_hash(raw)
    # Identical bytes arriving on two associations (of any listener process) share one file:
    # while one of them may still remove it (its row failed), the other must not count on it.
    with _content_lock(data_dir, hash_):
        stored = store_bytes(data_dir, raw, hash_=hash_)
        new = header.stored_as(path=stored.relative_path, content_hash=stored.content_hash,
                               size_bytes=stored.size_bytes)
        try:
            with sessions() as session:
                recorded = record_instance(session, new=new,
                                           hash_as=lambda algorithm: content_hash(raw, algorithm))
        except BaseException:
            remove_stored(data_dir, stored)
            raise
        if recorded.outcome is IngestOutcome.DUPLICATE:
            # Known under an older hash: the copy just written is nobody's file.
            remove_stored(data_dir, stored)
        return recorded


@contextlib.contextmanager
def _content_lock(data_dir: Path, hash_: str):
    """Hold the lock for files with this hash, across the listener's threads and processes.

    One of 256 lock files, by the hash's first byte: an flock is per open file, so threads
    and processes exclude each other alike, and a stripe shared by two different images only
    makes one wait for the other's commit.
    """
    path = data_dir / "locks" / f"{hash_.partition(':')[2][:2]}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # the first instance ever: make the folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock

"""Taking one instance in: store its bytes durably, commit its row, unless it is one already held.

Shared by the C-STORE handler and ``radtriage backfill``, so a file read from disk goes
exactly the way a pushed one does. What is accepted at all is decided before, by
``dicom.acceptance.identify`` (re-exported here); the bytes are stored exactly as received.

A copy of a SOP instance already held is a duplicate, answered Success and neither stored
nor triaged again, when its dataset (without the file meta) is the same, or when it is the
same image in another transfer syntax (``dicom.identity``); any other copy is a revision.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.ingest import IngestOutcome, InstanceHeader, Recorded, record_instance, remember_hashes, stored_copies
from dicom.acceptance import identify, split_part10
from dicom.identity import dataset_hash, image_hash_of_bytes, image_hash_of_file
from dicom.storage import Parts, content_hash, content_lock, instance_lock, remove_stored, store_bytes

__all__ = ["identify", "take_in"]


def take_in(raw: Parts, header: InstanceHeader, *, data_dir: Path, sessions: sessionmaker[Session]) -> Recorded:
    """Store ``raw`` durably, then commit its row; nothing is kept if either fails.

    ``raw`` is a Part 10 file: whole, or as the two pieces (preamble and file meta, then the
    dataset) the listener and backfill hand over. A copy of an image already held is not
    stored: the outcome is ``DUPLICATE`` with the held copy's study.

    Raises
    ------
    OSError
        The file could not be written (disk full, permissions).
    sqlalchemy.exc.SQLAlchemyError
        The row could not be committed; the file just written is removed.
    """
    head, body = raw if isinstance(raw, (tuple, list)) and len(raw) == 2 else split_part10(raw)
    identity = dataset_hash(body)
    with instance_lock(data_dir, header.sop_instance_uid):
        held, image = _held_copy(head, body, identity, header, data_dir, sessions)
        if held is not None:
            return Recorded(IngestOutcome.DUPLICATE, held)
        return _store_and_record(raw, header, identity, image, data_dir=data_dir, sessions=sessions)


def _store_and_record(raw: Parts, header: InstanceHeader, identity: str, image: str | None, *, data_dir: Path,
                      sessions: sessionmaker[Session]) -> Recorded:
    hash_ = content_hash(raw)
    # Identical bytes arriving on two associations (of any listener process) share one file:
    # while one of them may still remove it (its row failed), the other must not count on it.
    with content_lock(data_dir, hash_):
        stored = store_bytes(data_dir, raw, hash_=hash_)
        new = header.stored_as(path=stored.relative_path, content_hash=stored.content_hash,
                               size_bytes=stored.size_bytes, dataset_hash=identity, image_hash=image)
        try:
            with sessions() as session:
                recorded = record_instance(session, new=new,
                                           hash_as=lambda algorithm: content_hash(raw, algorithm))
        except BaseException:
            remove_stored(data_dir, stored)
            raise
        if recorded.outcome is IngestOutcome.DUPLICATE:
            # Known under an older hash, or committed meanwhile by another association: the
            # copy just written is nobody's file.
            remove_stored(data_dir, stored)
        return recorded


def _held_copy(head: bytes, body, identity: str, header: InstanceHeader, data_dir: Path,
               sessions: sessionmaker[Session]) -> tuple[int | None, str | None]:
    """(study id of a copy held of this very image, or None; the new copy's image hash if computed).

    Cheap when nothing is held (one indexed query) or the dataset is the same (a hash
    compare); only a different dataset of a SOP instance already held costs a decode, of the
    new copy and, once per row, of each held one.
    """
    with sessions() as session:
        copies = stored_copies(session, header.sop_instance_uid)
        for copy in copies:
            if copy.dataset_hash is None:  # stored before dataset hashes: hash its file once
                try:
                    split = split_part10((data_dir / copy.path).read_bytes())[1]
                except OSError:  # its file is gone (purged): nothing to compare with
                    continue
                copy = dataclasses.replace(copy, dataset_hash=dataset_hash(split))
                remember_hashes(session, copy.id, dataset_hash=copy.dataset_hash)
            if copy.dataset_hash == identity:
                return copy.study_id, None
        if not copies:
            return None, None
        image = image_hash_of_bytes((head, body))
        if image is None:
            return None, None
        for copy in copies:
            theirs = copy.image_hash
            if theirs is None:
                theirs = image_hash_of_file(data_dir / copy.path)
                remember_hashes(session, copy.id, image_hash=theirs)
            if theirs == image:
                return copy.study_id, image
    return None, image

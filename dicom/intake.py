"""Taking one instance in: store its bytes durably, commit its row, unless it is one already held.

Shared by the C-STORE handler and ``radtriage backfill``, so a file read from disk goes
exactly the way a pushed one does. What is accepted at all is decided before, by
``dicom.acceptance.identify`` (re-exported here); the bytes are stored exactly as received.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.ingest import IngestOutcome, InstanceHeader, Recorded, record_instance
from dicom.acceptance import identify
from dicom.storage import Parts, content_hash, remove_stored, store_bytes

__all__ = ["identify", "take_in"]


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

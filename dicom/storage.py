"""Durable storage of received instances: content-addressed files, fsynced before Success."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path

OBJECTS = "objects"


@dataclasses.dataclass(frozen=True, slots=True)
class StoredFile:
    relative_path: str  # relative to the data folder, as recorded in the database
    sha256: str
    size_bytes: int
    created: bool  # False when identical bytes were already stored


def store_bytes(data_dir: Path, data: bytes, *, digest: str | None = None) -> StoredFile:
    """Write ``data`` under ``data_dir/objects/`` named by its SHA-256, durably.

    The bytes go to a temporary file that is fsynced and renamed into place, and the folder
    is fsynced, so a crash leaves either the whole file or nothing. Identical bytes are
    stored once; different bytes never overwrite each other.

    Raises
    ------
    OSError
        The disk is full or not writable (the listener answers 0xA700).
    """
    digest = digest or hashlib.sha256(data).hexdigest()
    relative = Path(OBJECTS, digest[:2], digest[2:4], f"{digest}.dcm")
    target = data_dir / relative
    if target.exists() and target.stat().st_size == len(data):
        return StoredFile(relative.as_posix(), digest, len(data), created=False)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        _unlink_quietly(tmp_name)
        raise
    _fsync_dir(folder)
    return StoredFile(relative.as_posix(), digest, len(data), created=True)


def remove_stored(data_dir: Path, stored: StoredFile) -> None:
    """Undo ``store_bytes`` when the database row could not be committed."""
    if stored.created:
        _unlink_quietly(data_dir / stored.relative_path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""Removing stored files no instance row names: what a crash between the file and its row leaves.

A file is fsynced and renamed into place before its row commits, so a daemon killed in between
leaves a finished file (or a ``.incoming-`` temporary one) nobody will ever read. The start-up
check removes them, carefully: only under the data folder's instance tree (``objects/``), only
files older than ``min_age`` seconds, and each one under the same lock ``dicom.intake`` holds
from writing a file to committing its row, so a file still being recorded is never taken.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.stored_files import recorded_paths
from dicom.storage import ALGORITHM, OBJECTS, content_lock

log = logging.getLogger(__name__)

_BATCH = 500  # paths asked about per query


def remove_orphans(data_dir: Path, sessions: sessionmaker[Session], *, min_age: float = 10.0) -> int:
    """Remove files under ``data_dir/objects`` that no instance row names; returns how many.

    Files modified less than ``min_age`` seconds ago are left alone.
    """
    root = data_dir / OBJECTS
    if not root.is_dir():
        return 0
    cutoff = time.time() - min_age
    removed = 0
    batch: list[Path] = []
    for path in _old_files(root, cutoff):
        batch.append(path)
        if len(batch) >= _BATCH:
            removed += _remove_unrecorded(data_dir, batch, sessions)
            batch = []
    removed += _remove_unrecorded(data_dir, batch, sessions)
    if removed:
        log.warning("removed %d stored file(s) no instance was recorded for (left by an interrupted store)",
                    removed)
    return removed


def _old_files(root: Path, cutoff: float):
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            try:
                if path.stat().st_mtime < cutoff:
                    yield path
            except FileNotFoundError:
                continue


def _remove_unrecorded(data_dir: Path, paths: list[Path], sessions: sessionmaker[Session]) -> int:
    removed = 0
    relative = {path: path.relative_to(data_dir).as_posix() for path in paths}
    with sessions() as session:
        known = recorded_paths(session, list(relative.values()))
    for path, name in relative.items():
        if name in known:
            continue
        if path.name.startswith(".incoming-"):
            path.unlink(missing_ok=True)  # a temporary file is never recorded; an old one is abandoned
            removed += 1
            continue
        # Asked again under the lock dicom.intake holds from the write to the commit: a row
        # on its way is seen.
        with content_lock(data_dir, f"{ALGORITHM}:{path.stem}"), sessions() as session:
            if not recorded_paths(session, [name]):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


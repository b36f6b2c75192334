"""Finding the files a backfill reads, lazily, and reading each as the Part 10 bytes a C-STORE would carry."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every file under the given folders (in name order), the instances a DICOMDIR names, and
    plain files, one at a time: an archive of any size is walked without listing it whole.

    Raises
    ------
    FileNotFoundError
        A given path does not exist (checked before the first file is yielded).
    """
    roots = list(dict.fromkeys(Path(path) for path in paths))
    for root in roots:
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {root}")
    for root in roots:
        if root.is_dir():
            yield from _walk(root)
        elif root.name.upper() == "DICOMDIR":
            yield from _dicomdir_files(root)
        else:
            yield root


def count_files(paths: Iterable[Path]) -> int:
    """How many files :func:`iter_files` yields, counted without keeping them (for progress)."""
    return sum(1 for _ in iter_files(paths))


def _walk(folder: Path) -> Iterator[Path]:
    # os.scandir, sorted per folder: the same order as a sorted rglob, one folder in memory at a time.
    with os.scandir(folder) as listing:
        entries = sorted(listing, key=lambda entry: entry.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=True):
            yield from _walk(Path(entry.path))
        elif entry.is_file() and entry.name.upper() != "DICOMDIR":
            yield Path(entry.path)


def _dicomdir_files(path: Path) -> list[Path]:
    from pydicom.fileset import FileSet

    return [Path(instance.path) for instance in FileSet(pydicom.dcmread(path))]


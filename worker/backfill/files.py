"""Finding the files a backfill reads and reading each as the Part 10 bytes a C-STORE would carry."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pydicom

from dicom.acceptance import read_file


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


def read_part10(path: Path) -> tuple[tuple[bytes, bytes | memoryview], pydicom.Dataset, str]:
    """The file as Part 10 pieces (file meta, dataset bytes) with its dataset and transfer syntax.

    Read by ``dicom.acceptance.read_file``, as ``radtriage send`` reads it: a file without a
    meta header is given one naming the encoding its dataset has.

    Raises
    ------
    InvalidDataset
        The file is not DICOM or cannot be parsed (the message says which, and why).
    """
    part = read_file(path)
    return part.parts, part.dataset, part.transfer_syntax

"""Finding the files a backfill reads and reading each as the Part 10 bytes a C-STORE would carry."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite
from pydicom.uid import ImplicitVRLittleEndian

from dicom.errors import InvalidDataset


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

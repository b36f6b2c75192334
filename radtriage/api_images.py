"""What the API reads from stored images: the patient and study header, shown to signed-in users
only and never logged, and a small PNG preview of the frontal view, cached on disk by content."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

from db.study_detail import InstanceRow
from dicom.errors import DicomError
from dicom.pixels import to_model_array
from dicom.render import to_gray_8bit
from radtriage.api_models import StudyHeader

PREVIEW_SIDE = 256
PREVIEWS = "previews"

# (field of StudyHeader, DICOM keyword)
_HEADER = (
    ("patient_name", "PatientName"), ("patient_id", "PatientID"), ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"), ("study_date", "StudyDate"), ("study_time", "StudyTime"),
    ("study_description", "StudyDescription"), ("referring_physician", "ReferringPhysicianName"),
    ("institution", "InstitutionName"),
)


class NoImage(Exception):
    """No stored image of the study can be read or rendered (HTTP 404); names no patient data."""


def stored_path(data_dir: Path, instance: InstanceRow) -> Path:
    """The stored file of ``instance``, refusing a recorded path that would leave the data folder.

    Raises
    ------
    NoImage
    """
    root = data_dir.resolve()
    path = (root / instance.path).resolve()
    if root not in path.parents or not path.is_file():
        raise NoImage("the stored image is missing")
    return path


def read_header(data_dir: Path, instances: Sequence[InstanceRow]) -> StudyHeader | None:
    """Patient and study fields of the first stored image that can be read; None if none can."""
    for instance in instances:
        try:
            ds = pydicom.dcmread(stored_path(data_dir, instance), stop_before_pixels=True, force=True,
                                 specific_tags=[keyword for _, keyword in _HEADER])
        except (NoImage, OSError, InvalidDicomError, ValueError, TypeError):
            continue
        return StudyHeader(**{field: _text(ds.get(keyword)) for field, keyword in _HEADER})
    return None


def _text(value) -> str | None:
    # Person names show their components spaced ("DOE^JANE" → "DOE JANE").
    text = "" if value is None else str(value).replace("^", " ").strip()
    return " ".join(text.split()) or None


def frontal_first(instances: Sequence[InstanceRow]) -> list[InstanceRow]:
    """The instances to try for a preview: frontal views first, then the rest, in arrival order."""
    return sorted(instances, key=lambda i: i.view != "frontal")


def preview_png(data_dir: Path, instances: Sequence[InstanceRow]) -> bytes:
    """A PNG of the frontal image at most ``PREVIEW_SIDE`` pixels a side, rendered once per image.

    Stored files are named by their content hash, so the file name keys the cache: a changed
    image is a new file and gets a new preview.

    Raises
    ------
    NoImage
        No stored image of the study renders (missing, not an image, undecodable pixels).
    """
    cache = data_dir / PREVIEWS
    for instance in frontal_first(instances):
        try:
            path = stored_path(data_dir, instance)
        except NoImage:
            continue
        cached = cache / f"{path.stem}.png"
        if cached.is_file():
            return cached.read_bytes()
        try:
            png = _render(path)
        except (DicomError, OSError, InvalidDicomError, ValueError):
            continue
        _write_atomically(cache, cached, png)
        return png
    raise NoImage("no stored image of this study can be shown")


def _render(path: Path) -> bytes:
    image = Image.fromarray(to_gray_8bit(to_model_array(pydicom.dcmread(path, force=True))))
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _write_atomically(folder: Path, target: Path, data: bytes) -> None:
    # Two requests may render the same preview at once: each writes its own file, the rename wins.
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)  # a cache that cannot be written still serves the preview

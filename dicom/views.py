"""Which view a radiograph is, and how many instances its study should hold, as its header says.

Inputs to the completion rule (``common.completion``): ViewPosition, else the View Code
Sequence, else the Patient Orientation of its rows and columns; and NumberOfStudyRelatedInstances.
"""

from __future__ import annotations

from pydicom import Dataset

from common import View
from dicom.selection import FRONTAL_VIEWS, LATERAL_VIEWS

__all__ = ["expected_instances", "view_of"]


# Code meanings of CID 4010 "DX View" (and the like) that name a projection.
_FRONTAL_MEANINGS = ("antero-posterior", "postero-anterior", "anterior-posterior", "posterior-anterior")
_LATERAL_MEANINGS = ("lateral",)
# Patient Orientation (0020,0020) letters of a row/column direction.
_LEFT_RIGHT, _FRONT_BACK = frozenset("LR"), frozenset("AP")


def view_of(ds: Dataset) -> View | None:
    """The view of a radiograph from its header, or None when nothing says.

    Parameters
    ----------
    ds : pydicom.Dataset
        The received dataset (only header attributes are read).

    Returns
    -------
    View or None
        From ViewPosition (0018,5101) PA/AP or a lateral code; else the View Code
        Sequence (0054,0220) code meaning; else Patient Orientation (0020,0020): a row
        direction left/right with a column direction head/foot is a frontal image plane,
        anterior/posterior a lateral one.
    """
    position = _text(ds.get("ViewPosition")).upper()
    if position in FRONTAL_VIEWS:
        return View.FRONTAL
    if position in LATERAL_VIEWS:
        return View.LATERAL
    for item in ds.get("ViewCodeSequence") or []:
        meaning = _text(item.get("CodeMeaning")).lower()
        if any(m in meaning for m in _FRONTAL_MEANINGS):
            return View.FRONTAL
        if any(m in meaning for m in _LATERAL_MEANINGS):
            return View.LATERAL
    return _view_from_orientation(ds.get("PatientOrientation"))


def _view_from_orientation(value) -> View | None:
    if value is None or isinstance(value, (str, bytes)) or len(value) != 2:
        return None
    row, column = (_text(v).upper() for v in value)
    if not row or not column or not set(column) & set("HF"):
        return None
    # The dominant direction is the first letter of an oblique value such as "LA".
    if row[0] in _LEFT_RIGHT:
        return View.FRONTAL
    if row[0] in _FRONT_BACK:
        return View.LATERAL
    return None


# Above this (0020,1208) is taken for garbage and ignored, as any unusable value is: no chest
# X-ray study has that many instances, and the column is a 32-bit integer.
MAX_EXPECTED_INSTANCES = 100_000


def expected_instances(ds: Dataset) -> int | None:
    """NumberOfStudyRelatedInstances (0020,1208) when present and a plausible positive integer."""
    try:
        value = int(str(ds.get("NumberOfStudyRelatedInstances", "") or "").strip())
    except (TypeError, ValueError, OverflowError):
        return None
    return value if 0 < value <= MAX_EXPECTED_INSTANCES else None


def _text(value) -> str:
    return str(value or "").strip()

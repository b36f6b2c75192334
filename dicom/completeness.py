"""When is a study complete? The view-aware rule, pure: header values in, decisions out.

A study is complete by its views, after a short grace, when it holds a frontal view and
its expected instance count is met: NumberOfStudyRelatedInstances when a sender gives it,
otherwise a frontal and a lateral view. Every other study completes on the quiet timer
(``db.assembly``). Which view an image is comes from ViewPosition, else the View Code
Sequence, else the Patient Orientation of its rows and columns.
"""

from __future__ import annotations

import dataclasses
import enum

from pydicom import Dataset

from dicom.selection import FRONTAL_VIEWS, LATERAL_VIEWS

__all__ = ["StudyViews", "View", "expected_instances", "views_complete", "view_of"]


class View(str, enum.Enum):
    """The projection class of a radiograph, as far as the header says."""

    FRONTAL = "frontal"
    LATERAL = "lateral"


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


def expected_instances(ds: Dataset) -> int | None:
    """NumberOfStudyRelatedInstances (0020,1208) when present and a positive integer."""
    try:
        value = int(str(ds.get("NumberOfStudyRelatedInstances", "") or "").strip())
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


@dataclasses.dataclass(frozen=True, slots=True)
class StudyViews:
    """What the database knows about a study's views so far."""

    instance_count: int  # distinct SOP Instance UIDs received
    has_frontal: bool
    has_lateral: bool
    expected: int | None  # the largest NumberOfStudyRelatedInstances any instance gave

    def __post_init__(self) -> None:
        if self.instance_count < 0 or (self.expected is not None and self.expected < 1):
            raise ValueError("instance counts cannot be negative or zero")

    def add(self, view: View | None, expected: int | None, new_instance: bool) -> StudyViews:
        """The state after one more instance (``new_instance``: a SOP Instance UID not seen yet)."""
        return StudyViews(
            instance_count=self.instance_count + (1 if new_instance else 0),
            has_frontal=self.has_frontal or view is View.FRONTAL,
            has_lateral=self.has_lateral or view is View.LATERAL,
            expected=max(filter(None, (self.expected, expected)), default=None),
        )


def views_complete(views: StudyViews) -> bool:
    """True when the study may complete after the grace instead of the quiet timer.

    A frontal view is required; then the expected count must be met, or, when no sender
    said how many to expect, a lateral view must have arrived as well.
    """
    if not views.has_frontal:
        return False
    if views.expected is not None:
        return views.instance_count >= views.expected
    return views.has_lateral


def _text(value) -> str:
    return str(value or "").strip()

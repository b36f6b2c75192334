"""Which images of a study the AI looks at: chest radiographs only, frontal views first.

An image is left out, with a reason the worklist shows, when its SOP class is not a
radiograph (CR, DX, or a secondary capture of one), its modality is not CR/DX, or its
BodyPartExamined names something other than the chest. Of the chest radiographs, the
frontal (PA/AP) views are scored; a view that is not recorded counts as possibly frontal;
a study with laterals only is scored from them and says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from pydicom.uid import UID

from common import RADIOGRAPH_SOP_CLASSES, SECONDARY_CAPTURE

FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "RLD", "LLD"})
# BodyPartExamined values that are (or may be) a chest; empty is common on chest exports.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    """The images to score and, for the worklist, why others were not.

    Attributes
    ----------
    chosen : tuple
        The instances to score, in study order.
    note : str or None
        Why nothing, or why only a lateral, was chosen.
    skipped : tuple of (instance id, reason)
        Images left out because they are not chest radiographs.
    """

    chosen: tuple
    note: str | None
    skipped: tuple[tuple[Any, str], ...] = ()

    @property
    def notes(self) -> tuple[str, ...]:
        """Every reason to show on the worklist: the note, then one line per skipped image."""
        lines = [self.note] if self.note else []
        return tuple(lines + [f"image #{image_id} not scored: {reason}" for image_id, reason in self.skipped])


def choose_images(instances: Iterable[Any]) -> Selection:
    """The instances to score: frontal chest radiographs, else laterals (with a note), else none.

    Parameters
    ----------
    instances : iterable
        Objects with ``id``, ``body_part``, ``view_position`` and, when known,
        ``sop_class_uid`` and ``modality`` (``db.triage.InstanceInfo``).
    """
    chest, skipped = [], []
    for info in instances:
        reason = not_a_chest_radiograph(info)
        if reason is None:
            chest.append(info)
        else:
            skipped.append((getattr(info, "id", "?"), reason))
    if not chest:
        return Selection((), "not scored: the study holds no chest radiograph", tuple(skipped))
    frontal = [i for i in chest if _view(i) in FRONTAL_VIEWS]
    if frontal:
        return Selection(tuple(frontal), None, tuple(skipped))
    unknown = [i for i in chest if _view(i) not in LATERAL_VIEWS]
    if unknown:
        return Selection(tuple(unknown), None, tuple(skipped))
    return Selection(tuple(chest), "scored from a lateral view: the study has no frontal view", tuple(skipped))


def not_a_chest_radiograph(info: Any) -> str | None:
    """Why an image is not scored (SOP class, modality, body part), or None if it is a chest radiograph.

    Reasons quote only standard codes (SOP class names, Modality, BodyPartExamined), no PHI.
    """
    sop = str(getattr(info, "sop_class_uid", None) or "")
    modality = (getattr(info, "modality", None) or "").strip().upper()
    part = (getattr(info, "body_part", None) or "").strip().upper()
    if sop and sop not in RADIOGRAPH_SOP_CLASSES and sop != SECONDARY_CAPTURE:
        return f"{_sop_name(sop)} is not a radiograph"
    if modality and modality not in RADIOGRAPH_MODALITIES:
        return f"modality {modality[:16]} is not a radiograph (CR/DX)"
    if sop == SECONDARY_CAPTURE and not modality:
        return "secondary capture without a radiograph modality (CR/DX)"
    if part and part not in CHEST_BODY_PARTS:
        return f"body part {part[:16]} is not the chest"
    return None


def _sop_name(sop: str) -> str:
    name = UID(sop).name
    return f"SOP class {name}" if name and name != sop else "an unknown (private) SOP class"


def _view(info: Any) -> str:
    return (getattr(info, "view_position", None) or "").strip().upper()

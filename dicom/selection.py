"""Which images of a study the AI looks at: chest radiographs only, frontal views first.

An image is left out, with a reason the worklist shows, when its SOP class is not a
radiograph (CR, DX, or a secondary capture of one), its modality is not CR/DX, or its
BodyPartExamined names something other than the chest; and, when its header is at hand,
when it is colour or multi-frame, when its descriptions name another part of the body (with
no chest word beside it: a dental panoramic carries no BodyPartExamined) or an animal. Of the
chest radiographs, the frontal (PA/AP) views are scored; a view that is not recorded counts
as possibly frontal; a study with laterals only is scored from them and says so. A study
with no chest radiograph at all is said to be none (:func:`not_chest_reason`), with or
without a model.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.uid import UID

from common import RADIOGRAPH_SOP_CLASSES, SECONDARY_CAPTURE

FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "RLD", "LLD"})
# BodyPartExamined values that are (or may be) a chest; empty is common on chest exports.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
# Free-text header attributes that name what was imaged. Only the matched word is ever quoted.
_DESCRIPTIONS = ("StudyDescription", "SeriesDescription", "ProtocolName", "RequestedProcedureDescription",
                 "PerformedProcedureStepDescription", "AcquisitionDeviceProcessingDescription")
_CHEST_WORDS = frozenset({"CHEST", "THORAX", "THORACIC", "LUNG", "LUNGS", "CXR", "PULMONARY", "RIB", "RIBS"})
_OTHER_PARTS = frozenset({
    "TEETH", "TOOTH", "DENTAL", "PANORAMIC", "PANO", "OPG", "ORTHOPANTOMOGRAM", "MANDIBLE", "SKULL", "SINUS",
    "SINUSES", "FACE", "HIP", "HIPS", "PELVIS", "KNEE", "KNEES", "FEMUR", "TIBIA", "ANKLE", "FOOT", "FEET", "HAND",
    "HANDS", "WRIST", "FINGER", "ELBOW", "FOREARM", "HUMERUS", "SHOULDER", "CLAVICLE", "SPINE", "CSPINE", "TSPINE",
    "LSPINE", "CERVICAL", "LUMBAR", "SACRUM", "ABDOMEN", "KUB", "EXTREMITY", "MAMMOGRAPHY", "BREAST",
})
_ANIMALS = frozenset({"CANINE", "FELINE", "EQUINE", "BOVINE", "PORCINE", "OVINE", "VETERINARY", "VETERINARIAN",
                      "DOG", "CAT", "HORSE"})
_WORD = re.compile(r"[A-Z]+")


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


def choose_images(instances: Iterable[Any], header_of: Callable[[Any], Any] | None = None) -> Selection:
    """The instances to score: frontal chest radiographs, else laterals (with a note), else none.

    Parameters
    ----------
    instances : iterable
        Objects with ``id``, ``body_part``, ``view_position`` and, when known,
        ``sop_class_uid`` and ``modality`` (``db.triage.InstanceInfo``).
    header_of : callable, optional
        The instance's header (a pydicom Dataset, pixels not read) or None, for what the
        recorded attributes do not say (:func:`header_says_not_chest`).
    """
    chest, skipped = [], []
    for info in instances:
        reason = not_a_chest_radiograph(info)
        if reason is None and header_of is not None:
            reason = header_says_not_chest(header_of(info))
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


def header_says_not_chest(ds: Any) -> str | None:
    """Why a header the recorded attributes let through is still no (human) chest radiograph, or None.

    Colour and multi-frame images are not chest radiographs; nor is an image whose
    descriptions name an animal, or another part of the body with no chest word beside it.
    """
    if ds is None:
        return None
    samples, frames = ds.get("SamplesPerPixel"), ds.get("NumberOfFrames")
    if isinstance(samples, int) and samples != 1:
        return f"a colour image ({samples} samples per pixel)"
    try:
        if frames is not None and int(frames) > 1:
            return f"a multi-frame image ({int(frames)} frames)"
    except (TypeError, ValueError):
        pass
    words = set()
    for keyword in _DESCRIPTIONS:
        words |= set(_WORD.findall(str(ds.get(keyword, "") or "").upper()))
    species = str(ds.get("PatientSpeciesDescription", "") or "").strip().upper()
    if species and species not in ("HUMAN", "HOMO SAPIENS"):
        return "a veterinary image (patient species recorded)"
    if words & _ANIMALS:
        return f"a veterinary image (description says {min(words & _ANIMALS)})"
    if words & _OTHER_PARTS and not words & _CHEST_WORDS:
        return f"the description says {min(words & _OTHER_PARTS)}, not the chest"
    return None


def not_chest_reason(instances: Iterable[Any]) -> str:
    """The worklist's reason for a study without a chest radiograph, e.g.
    ``not a chest radiograph (body part HIP, view AP)``; each distinct image kind once."""
    kinds = []
    for info in instances:
        part = (getattr(info, "body_part", None) or "").strip().upper()[:16] or "not recorded"
        view = _view(info)[:16] or "not recorded"
        kind = f"body part {part}, view {view}"
        if kind not in kinds:
            kinds.append(kind)
    return f"not a chest radiograph ({'; '.join(kinds) or 'no image'})"


def _sop_name(sop: str) -> str:
    name = UID(sop).name
    return f"SOP class {name}" if name and name != sop else "an unknown (private) SOP class"


def _view(info: Any) -> str:
    return (getattr(info, "view_position", None) or "").strip().upper()

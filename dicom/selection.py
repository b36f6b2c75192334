"""Which images of a study the AI looks at: frontal chest views first."""

from __future__ import annotations

import dataclasses
from typing import Protocol

FRONTAL_VIEWS = frozenset({"PA", "AP"})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "RLD", "LLD"})
# BodyPartExamined values that are (or may be) a chest; empty is common on chest exports.
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "PORT CHEST"})


class ImageInfo(Protocol):
    body_part: str | None
    view_position: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    chosen: tuple
    note: str | None  # why nothing, or why only a lateral, was chosen


def choose_images(instances) -> Selection:
    """The instances to score: frontal chest views, else laterals (with a note), else none."""
    chest = [i for i in instances if _is_chest(i)]
    if not chest:
        return Selection((), "not scored: the study holds no chest image")
    frontal = [i for i in chest if _view(i) in FRONTAL_VIEWS]
    if frontal:
        return Selection(tuple(frontal), None)
    unknown = [i for i in chest if _view(i) not in LATERAL_VIEWS]
    if unknown:
        return Selection(tuple(unknown), None)
    return Selection(tuple(chest), "scored from a lateral view: the study has no frontal view")


def _is_chest(info: ImageInfo) -> bool:
    part = (info.body_part or "").strip().upper()
    return not part or part in CHEST_BODY_PARTS


def _view(info: ImageInfo) -> str:
    return (info.view_position or "").strip().upper()

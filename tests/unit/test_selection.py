"""dicom.selection: chest radiographs only, frontal first, and a reason for every image left out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from common import SECONDARY_CAPTURE
from dicom.selection import choose_images, not_a_chest_radiograph

CR = "1.2.840.10008.5.1.4.1.1.1"
DX = "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Info:
    id: int
    sop_class_uid: str | None = DX
    modality: str | None = "DX"
    body_part: str | None = "CHEST"
    view_position: str | None = "PA"


def test_frontal_views_are_chosen_over_laterals():
    pa, lat = Info(1), Info(2, view_position="LL")
    selection = choose_images([lat, pa])
    assert selection.chosen == (pa,) and selection.notes == ()


def test_lateral_only_study_is_scored_with_a_reason():
    selection = choose_images([Info(1, view_position="LATERAL")])
    assert len(selection.chosen) == 1
    assert selection.notes == ("scored from a lateral view: the study has no frontal view",)


def test_unrecorded_view_counts_as_possibly_frontal():
    assert choose_images([Info(1, view_position=None), Info(2, view_position="LL")]).chosen == (Info(1, view_position=None),)


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (Info(1, sop_class_uid=CT, modality="CT"), "SOP class CT Image Storage is not a radiograph"),
        (Info(1, sop_class_uid="1.3.46.670589.5.0.1.1"), "an unknown (private) SOP class is not a radiograph"),
        (Info(1, modality="MG"), "modality MG is not a radiograph (CR/DX)"),
        (Info(1, sop_class_uid=SECONDARY_CAPTURE, modality=None), "secondary capture without a radiograph modality"),
        (Info(1, sop_class_uid=SECONDARY_CAPTURE, modality="OT"), "modality OT is not a radiograph"),
        (Info(1, sop_class_uid=CR, modality="CR", body_part="HIP"), "body part HIP is not the chest"),
    ],
)
def test_non_chest_images_are_not_scored_and_say_why(info, reason):
    assert reason in not_a_chest_radiograph(info)
    selection = choose_images([info])
    assert selection.chosen == ()
    assert selection.notes[0] == "not scored: the study holds no chest radiograph"
    assert selection.notes[1].startswith("image #1 not scored: ") and reason in selection.notes[1]


@pytest.mark.parametrize("info", [Info(1), Info(1, sop_class_uid=CR, modality="CR", body_part=None),
                                  Info(1, sop_class_uid=SECONDARY_CAPTURE, modality="DX", body_part="THORAX")])
def test_chest_radiographs_are_accepted(info):
    assert not_a_chest_radiograph(info) is None


def test_mixed_study_scores_the_chest_and_lists_the_rest():
    selection = choose_images([Info(7, body_part="KNEE", view_position="AP"), Info(8)])
    assert [i.id for i in selection.chosen] == [8]
    assert selection.notes == ("image #7 not scored: body part KNEE is not the chest",)


def test_real_samples_chest_versus_non_chest(samples: Path):
    def info(path: Path) -> Info:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        return Info(1, str(ds.get("SOPClassUID", "")), ds.get("Modality"), ds.get("BodyPartExamined"),
                    ds.get("ViewPosition"))

    for path in sorted((samples / "chest").glob("*.dcm")):
        assert not_a_chest_radiograph(info(path)) is None, path.name
    refused = {p.name: not_a_chest_radiograph(info(p)) for p in (samples / "xray_nonchest").glob("*.dcm")}
    # The dental panorama records no body part: only a view/anatomy model could tell.
    assert {n for n, r in refused.items() if r is None} <= {"CR-ModalitySequenceLUT_dental_pano.dcm"}
    assert "EYE" in not_a_chest_radiograph(info(samples / "edge" / "medsiglip_encapsulated_cxr_fake.dcm"))

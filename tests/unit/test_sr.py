"""The draft SR: UNVERIFIED, in the source study, referencing its images; read by pydicom and DCMTK."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from common import DISCLAIMER
from dicom.sr import build_draft_sr, draft_sr_uids
from scoring.draft_prompt import PROMPT_VERSION
from scoring.medgemma import Draft
from tests.conftest import need
from tests.factories import radiograph

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
FINDINGS = "Large right pneumothorax with leftward mediastinal shift ≥ 2 cm."
IMPRESSION = "Right tension pneumothorax."


@pytest.fixture
def sources():
    pa = radiograph(seed=1, priority="ROUTINE")
    pa.PatientBirthDate, pa.PatientSex, pa.StudyDate, pa.StudyTime = "19700101", "F", "20261128", "101500"
    lateral = radiograph(study_uid=pa.StudyInstanceUID, view="LL", seed=2)
    return [pa, lateral]


@pytest.fixture
def draft() -> Draft:
    return Draft(
        findings=FINDINGS, impression=IMPRESSION, raw_text=f"FINDINGS: {FINDINGS}\nIMPRESSION: {IMPRESSION}",
        model_id="google/medgemma-1.5-4b-it", prompt_version=PROMPT_VERSION,
        prompt_tokens=310, new_tokens=28, seconds=1.25,
    )


def build(sources, draft, **overrides):
    series_uid, sop_uid = draft_sr_uids(sources[0].StudyInstanceUID, "draft-7")
    values = dict(
        draft=draft, priority="STAT", urgency_score=87.5,
        finding_scores={"pneumothorax": 0.31, "widened_mediastinum": -0.12},
        model_version="0123abc", series_instance_uid=series_uid, sop_instance_uid=sop_uid,
    )
    return build_draft_sr(sources, **{**values, **overrides})


def saved(sr, tmp_path: Path) -> Path:
    path = tmp_path / "draft_sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


def texts(ds) -> dict[str, str]:
    """Concept meaning → value of every TEXT/NUM item, walking the whole content tree."""
    found = {}
    for item in ds.get("ContentSequence", []):
        meaning = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT":
            found[meaning] = item.TextValue
        elif item.ValueType == "NUM":
            found[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
        found.update(texts(item))
    return found


def test_sr_parses_with_pydicom_and_carries_the_draft(sources, draft, tmp_path: Path) -> None:
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))

    assert ds.SOPClassUID == COMPREHENSIVE_SR and ds.Modality == "SR"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert (ds.VerificationFlag, ds.CompletionFlag, ds.PreliminaryFlag) == ("UNVERIFIED", "PARTIAL", "PRELIMINARY")
    assert "VerifyingObserverSequence" not in ds
    assert "UNVERIFIED AI DRAFT" in ds.SeriesDescription
    values = texts(ds)
    assert values["Comment"] == DISCLAIMER
    assert values["Finding"] == FINDINGS  # non-ASCII survives (UTF-8 character set)
    assert values["Impression"] == IMPRESSION
    assert values["Worklist priority"] == "STAT"
    assert values["Urgency score (0-100)"] == 87.5
    assert values["AI score: pneumothorax"] == 0.31 and values["AI score: widened_mediastinum"] == -0.12
    assert values["Algorithm Name"] == "google/medgemma-1.5-4b-it" and values["Algorithm Version"] == "0123abc"
    assert PROMPT_VERSION in values["Algorithm Parameters"]


def test_sr_is_in_the_source_study_with_its_patient(sources, draft, tmp_path: Path) -> None:
    pa = sources[0]
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))

    assert ds.StudyInstanceUID == pa.StudyInstanceUID
    assert ds.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate"):
        assert ds[keyword].value == pa[keyword].value, keyword
    assert "PixelData" not in ds


def test_sr_references_every_source_image(sources, draft, tmp_path: Path) -> None:
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))
    expected = {(s.SeriesInstanceUID, s.SOPInstanceUID, s.SOPClassUID) for s in sources}

    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == sources[0].StudyInstanceUID
    evidence = {
        (series.SeriesInstanceUID, ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID)
        for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence
    }
    assert evidence == expected
    images = {
        (item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID, item.ReferencedSOPSequence[0].ReferencedSOPClassUID)
        for item in ds.ContentSequence if item.ValueType == "IMAGE"
    }
    assert images == {(uid, cls) for _, uid, cls in expected}


def test_model_is_contributing_equipment_and_device_observer(sources, draft, tmp_path: Path) -> None:
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))
    model = [e for e in ds.ContributingEquipmentSequence if e.get("ManufacturerModelName") == draft.model_id]
    assert len(model) == 1
    assert model[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"  # Processing Equipment
    assert list(model[0].SoftwareVersions) == ["0123abc", PROMPT_VERSION]
    assert texts(ds)["Device Observer Name"] == draft.model_id


def test_sr_parses_with_dcmtk(sources, draft, tmp_path: Path) -> None:
    need(shutil.which("dsrdump") is not None, "DCMTK dsrdump")
    path = saved(build(sources, draft), tmp_path)

    result = subprocess.run(
        ["dsrdump", "+U8", "+Pl", "+Pu", str(path)], capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0, result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith(("E:", "F:"))], result.stderr
    out = result.stdout
    assert "Comprehensive SR Document" in out and "Verification Flag   : UNVERIFIED" in out
    assert DISCLAIMER in out and FINDINGS in out and IMPRESSION in out
    for source in sources:
        assert source.SOPInstanceUID in out


def test_uids_are_stable_per_study_and_key(sources, draft) -> None:
    first = build(sources, draft)
    again = build(sources, draft)
    assert (first.SeriesInstanceUID, first.SOPInstanceUID) == (again.SeriesInstanceUID, again.SOPInstanceUID)
    other = draft_sr_uids(sources[0].StudyInstanceUID, "draft-8")
    assert other != (first.SeriesInstanceUID, first.SOPInstanceUID)
    assert all(len(uid) <= 64 for uid in other)


def test_minimal_sources_and_no_urgency(draft) -> None:
    bare = radiograph(seed=3)  # no birth date, sex, study date: type 2, so left empty
    sr = build_draft_sr([bare], draft=draft, priority="ROUTINE", urgency_score=None, finding_scores={}, model_version="x")
    assert "PatientBirthDate" in sr and not sr.PatientBirthDate  # present (type 2), empty
    assert sr.StudyInstanceUID == bare.StudyInstanceUID
    assert "Urgency score (0-100)" not in texts(sr) and texts(sr)["Worklist priority"] == "ROUTINE"


@pytest.mark.parametrize(
    "change",
    [
        {"priority": "SOON"},
        {"urgency_score": 101.0},
        {"urgency_score": float("nan")},
        {"finding_scores": {"pneumothorax": float("inf")}},
    ],
)
def test_bad_values_are_refused(sources, draft, change) -> None:
    with pytest.raises(ValueError):
        build(sources, draft, **change)


def test_sources_must_share_one_study(sources, draft) -> None:
    with pytest.raises(ValueError, match="different studies"):
        build([*sources, radiograph(seed=9)], draft)
    with pytest.raises(ValueError, match="at least one"):
        build_draft_sr([], draft=draft, priority="STAT", urgency_score=None, finding_scores={}, model_version="x")

"""The draft SR: UNVERIFIED, in the source study, referencing its images; read by pydicom and DCMTK."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from common import DISCLAIMER
from dicom.sr import FindingResult, build_draft_sr, draft_sr_uids, scored_images
from scoring.draft_prompt import PROMPT_VERSION
from scoring.medgemma import Draft
from tests.conftest import need
from tests.factories import radiograph

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
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


RESULTS = (
    FindingResult("pneumothorax", 0.31, "zero-shot", 0.10, "cxr-foundation", "elixr-v2", "policy-sha256:ab12"),
    FindingResult("widened_mediastinum", -0.12, "zero-shot", 0.10, "cxr-foundation", "elixr-v2", "policy-sha256:ab12"),
    FindingResult("pleural_effusion", 0.42, "trained", 0.62, "cxr-foundation", "elixr-v2", "policy-sha256:ab12"),
)


def build(sources, draft, **overrides):
    series_uid, sop_uid = draft_sr_uids(sources[0].StudyInstanceUID, "draft-7")
    values = dict(
        draft=draft, priority="STAT", urgency_score=87.5, finding_scores=RESULTS,
        model_version="0123abc", series_instance_uid=series_uid, sop_instance_uid=sop_uid,
    )
    return build_draft_sr(scored_images(sources), **{**values, **overrides})


def groups(ds) -> dict[str, dict]:
    """Per TID 1501 measurement group: tracking id → {concept meaning: value}, codes as (value, scheme)."""
    (measurements,) = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"]
    found = {}
    for group in measurements.ContentSequence:
        row: dict = {"images": []}
        for item in group.ContentSequence:
            meaning = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "CODE":
                code = item.ConceptCodeSequence[0]
                row[meaning] = (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning)
            elif item.ValueType == "NUM":
                row[meaning] = float(item.MeasuredValueSequence[0].NumericValue)
                row.update({f"num {k}": v for k, v in texts(item).items()})
            elif item.ValueType == "IMAGE":
                row["images"].append(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            elif item.ValueType in ("TEXT", "UIDREF"):
                row.setdefault(meaning, []).append(item.get("TextValue", item.get("UID")))
        found[row["Tracking Identifier"][0]] = row
    return found


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

    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR and ds.Modality == "SR"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
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
    assert values["Draft model"] == f"google/medgemma-1.5-4b-it (0123abc), prompt {PROMPT_VERSION}"


def test_one_coded_measurement_group_per_finding(sources, draft, tmp_path: Path) -> None:
    found = groups(pydicom.dcmread(saved(build(sources, draft), tmp_path)))

    assert set(found) == {"pneumothorax", "widened_mediastinum", "pleural_effusion"}
    ptx = found["pneumothorax"]
    assert ptx["Finding"] == ("36118008", "SCT", "Pneumothorax")
    assert ptx["Zero-shot score (cosine difference)"] == 0.31 and ptx["Threshold Value"] == 0.10
    assert found["pneumothorax"]["Pneumothorax"][2] == "Present"
    assert found["widened_mediastinum"]["Widened mediastinum"][2] == "Absent"  # -0.12 < 0.10
    effusion = found["pleural_effusion"]
    assert effusion["Finding"][:2] == ("60046008", "SCT")
    assert effusion["Trained-head score (training-set calibrated)"] == 0.42 and effusion["Pleural effusion"][2] == "Absent"
    for row in found.values():  # the algorithm per finding: embedder, its version, the policy version
        assert row["Algorithm Name"] == ["cxr-foundation"] and row["Algorithm Version"] == ["elixr-v2"]
        assert "policy policy-sha256:ab12" in row["Algorithm Parameters"]
        assert row["images"] == [sources[0].SOPInstanceUID]  # the scored PA only, not the lateral


def test_sr_is_in_the_source_study_with_its_patient(sources, draft, tmp_path: Path) -> None:
    pa = sources[0]
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))

    assert ds.StudyInstanceUID == pa.StudyInstanceUID
    assert ds.SeriesInstanceUID not in {s.SeriesInstanceUID for s in sources}
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyDate"):
        assert ds[keyword].value == pa[keyword].value, keyword
    assert "PixelData" not in ds


def test_sr_references_only_the_images_scored(sources, draft, tmp_path: Path) -> None:
    ds = pydicom.dcmread(saved(build(sources, draft), tmp_path))
    pa = sources[0]  # the lateral is not scored when a frontal image exists
    expected = {(pa.SeriesInstanceUID, pa.SOPInstanceUID, pa.SOPClassUID)}

    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == sources[0].StudyInstanceUID
    evidence = {
        (series.SeriesInstanceUID, ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID)
        for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence
    }
    assert evidence == expected
    assert sources[1].SOPInstanceUID not in str(ds)


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
    assert "Comprehensive 3D SR Document" in out and "Verification Flag   : UNVERIFIED" in out
    assert DISCLAIMER in out and FINDINGS in out and IMPRESSION in out
    assert sources[0].SOPInstanceUID in out and sources[1].SOPInstanceUID not in out


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for one file (warnings, e.g. about the private scheme, are allowed)."""
    need(shutil.which("dciodvfy") is not None, "dicom3tools dciodvfy")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("kind", ["full", "bare mapping", "no findings"])
def test_every_sr_passes_dciodvfy(sources, draft, tmp_path: Path, kind: str) -> None:
    scores = {"full": RESULTS, "bare mapping": {"pneumothorax": 0.2}, "no findings": {}}[kind]
    path = saved(build(sources, draft, finding_scores=scores, urgency_score=None if kind == "no findings" else 50.0),
                 tmp_path)
    assert dciodvfy_errors(path) == []


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


def test_control_characters_a_model_writes_are_kept_out_of_the_sr(sources, draft, tmp_path: Path) -> None:
    # A model may emit tabs and other control characters that a Text Value (UT) may not hold.
    noisy = dataclasses.replace(draft, findings="Left\tapical\x0bpneumothorax\x07.", impression="Urgent\x1f review.")
    ds = build(sources, noisy)
    texts = [item.TextValue for item in ds.ContentSequence if "TextValue" in item]
    assert any("Left apical pneumothorax ." in t for t in texts) and any("Urgent  review." in t for t in texts)
    assert dciodvfy_errors(saved(ds, tmp_path)) == []

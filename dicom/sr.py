"""Draft + triage → a TID 1500 measurement report (Comprehensive 3D SR) in the source study, UNVERIFIED.

Built with highdicom's ``Comprehensive3DSR`` + ``MeasurementReport``, the shape IHE AI Results
viewers read: one measurement group per finding with a coded finding (SNOMED CT where one
exists), its presence by the policy's threshold, the score with its kind (zero-shot cosine
difference or trained-head score) and the threshold applied, the algorithm (model id,
version, policy version) and references to the images actually scored. The MedGemma draft
text follows as TEXT items after a Comment saying it is unverified. Patient and study come
from the source instances, never retyped.

Content tree::

    CONTAINER  Imaging Measurement Report (TID 1500)
     ├ HAS OBS CONTEXT  device observer = the model                    (TID 1004)
     ├ HAS CONCEPT MOD  Procedure reported: Plain chest X-ray
     ├ CONTAINS CONTAINER Imaging Measurements
     │   └ CONTAINER Measurement Group, per finding                    (TID 1501)
     │       tracking id, Finding = coded finding, Algorithm (TID 4019),
     │       NUM score (kind in its concept name), NUM Threshold value,
     │       CODE finding = Present | Absent, source images scored
     ├ CONTAINS TEXT  Worklist priority, NUM Urgency score (0-100)
     ├ CONTAINS TEXT  Comment: UNVERIFIED AI DRAFT - for research use only ...
     ├ CONTAINS TEXT  Comment: draft model, version and prompt version
     ├ CONTAINS TEXT  Finding: the draft FINDINGS
     └ CONTAINS TEXT  Impression: the draft IMPRESSION
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import SimpleNamespace
from typing import Protocol

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from common import DISCLAIMER, Priority
from dicom.selection import choose_images

__all__ = [
    "DEFAULT_SERIES_NUMBER", "DraftLike", "FindingResult", "build_draft_sr", "draft_sr_uids", "finding_concept",
    "scored_images",
]

DEFAULT_SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "UNVERIFIED AI DRAFT - research use only"
MANUFACTURER = "radtriage"
SCHEME = "99RADTRIAGE"  # a private coding scheme ("99" prefix, PS3.16 8.2)

_PROCEDURE = hd.sr.CodedConcept("399208008", "SCT", "Plain chest X-ray")
# Findings with a standard code; the rest get a private one (the meaning still reads well).
_FINDING_CODES = {
    "pneumothorax": codes.SCT.Pneumothorax,
    "pleural_effusion": codes.SCT.PleuralEffusion,
    "pulmonary_edema": codes.SCT.PulmonaryEdema,
    "cardiomegaly": codes.SCT.Cardiomegaly,
    "airspace_opacity": hd.sr.CodedConcept("95436008", "SCT", "Lung consolidation"),
}
_SCORE_KINDS = {
    "zero-shot": hd.sr.CodedConcept("ZSCOSDIFF", SCHEME, "Zero-shot score (cosine difference)"),
    "trained": hd.sr.CodedConcept("TRAINEDSCORE", SCHEME, "Trained-head score (training-set calibrated)"),
    None: hd.sr.CodedConcept("SCORE", SCHEME, "AI score (kind not recorded)"),
}
_PRIORITY = hd.sr.CodedConcept("PRIORITY", SCHEME, "Worklist priority")
_URGENCY = hd.sr.CodedConcept("URGENCY", SCHEME, "Urgency score (0-100)")
_DRAFT_MODEL = hd.sr.CodedConcept("DRAFTMODEL", SCHEME, "Draft model")
_NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
_CONTAINS = hd.sr.RelationshipTypeValues.CONTAINS
# Type 2 attributes highdicom reads from the first source as attributes: absent → empty.
_TYPE2_SOURCE = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "StudyID", "StudyDate", "StudyTime", "ReferringPhysicianName",
)


class DraftLike(Protocol):
    """What the SR needs of a draft (``scoring.medgemma.Draft`` fits)."""

    findings: str
    impression: str
    model_id: str
    prompt_version: str


@dataclass(frozen=True, slots=True)
class FindingResult:
    """One finding as triage judged it: what goes into its measurement group.

    ``kind`` is ``"zero-shot"`` (a difference of cosines) or ``"trained"`` (a trained head's
    score, calibrated to its training set's class balance), or None when not recorded;
    ``threshold`` is the one applied (None: not recorded, and presence is then not stated).
    ``model_id``/``model_version`` name the embedder, ``policy_version`` the policy.
    """

    name: str
    score: float
    kind: str | None = None
    threshold: float | None = None
    model_id: str = "unknown"
    model_version: str = "unknown"
    policy_version: str = "unknown"

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.score)):
            raise ValueError(f"finding score not finite: {self.name}")
        if self.threshold is not None and not math.isfinite(float(self.threshold)):
            raise ValueError(f"threshold not finite: {self.name}")
        if self.kind not in _SCORE_KINDS:
            raise ValueError(f"score kind must be 'zero-shot', 'trained' or None, got {self.kind!r}")

    @property
    def present(self) -> bool | None:
        return None if self.threshold is None else self.score >= self.threshold


def draft_sr_uids(study_instance_uid: str, key: str) -> tuple[str, str]:
    """Series and SOP Instance UIDs derived from the study and a key, e.g. ``"draft-42"``.

    The same inputs give the same UIDs, so sending a rebuilt SR again (a retry after a
    crash) replaces the copy the PACS already has instead of adding a second report.
    """
    series = generate_uid(entropy_srcs=["radtriage-draft-sr-series", study_instance_uid, key])
    instance = generate_uid(entropy_srcs=["radtriage-draft-sr-instance", study_instance_uid, key])
    return series, instance


def scored_images(source_datasets: Sequence[Dataset]) -> list[Dataset]:
    """The sources triage scores (``dicom.selection.choose_images``: frontal chest images, else
    laterals): the only images the SR's findings may reference."""
    infos = [
        SimpleNamespace(id=k, body_part=ds.get("BodyPartExamined"), view_position=ds.get("ViewPosition"),
                        sop_class_uid=ds.get("SOPClassUID"), modality=ds.get("Modality"))
        for k, ds in enumerate(source_datasets)
    ]
    return [source_datasets[info.id] for info in choose_images(infos).chosen]


def build_draft_sr(
    source_datasets: Sequence[Dataset],
    *,
    draft: DraftLike,
    priority: Priority | str,
    urgency_score: float | None,
    finding_scores: Mapping[str, float] | Sequence[FindingResult],
    model_version: str,
    model_id: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    instance_number: int = 1,
) -> Dataset:
    """Build the UNVERIFIED TID 1500 measurement report for one study's triage and draft.

    Parameters
    ----------
    source_datasets : sequence of pydicom.Dataset
        The images the scores and the draft came from, i.e. those triage scored
        (:func:`scored_images`); headers suffice. The first supplies patient and study.
    draft : DraftLike
        Findings, impression, model id and prompt version.
    priority : Priority or str
        The worklist priority.
    urgency_score : float or None
        0-100, or None when triage had no AI scores.
    finding_scores : sequence of FindingResult, or mapping of str to float
        One measurement group each. A bare mapping (name → score) records no kind or
        threshold, and so states no presence.
    model_version : str
        The draft model's revision (hub commit or folder hash).
    model_id : str, optional
        Defaults to ``draft.model_id``.
    series_instance_uid, sop_instance_uid : str, optional
        Default: fresh UIDs. Pass :func:`draft_sr_uids` to make retries idempotent.
    series_number, instance_number : int

    Returns
    -------
    pydicom.Dataset
        A ``highdicom.sr.Comprehensive3DSR`` (with file meta), Explicit VR Little Endian,
        ``VerificationFlag`` UNVERIFIED, ``CompletionFlag`` PARTIAL, ``PreliminaryFlag``
        PRELIMINARY, in the source study, in a series of its own.

    Raises
    ------
    ValueError
        No sources; sources from several studies or missing UIDs; a score, threshold or
        urgency that is not a finite number (urgency outside 0-100); an unknown priority.
    """
    sources = _checked_sources(source_datasets)
    priority = Priority(priority)
    model_id = model_id or draft.model_id
    if urgency_score is not None and not (math.isfinite(urgency_score) and 0 <= urgency_score <= 100):
        raise ValueError(f"urgency_score must be in [0, 100], got {urgency_score!r}")
    if isinstance(finding_scores, Mapping):
        bad = [name for name, value in finding_scores.items() if not math.isfinite(float(value))]
        if bad:
            raise ValueError(f"finding score(s) not finite: {', '.join(sorted(bad))}")
        results = [FindingResult(name, float(value)) for name, value in finding_scores.items()]
    else:
        results = list(finding_scores)
    software = _software_version()

    report = hd.sr.MeasurementReport(
        observation_context=_device_observer(model_id),
        procedure_reported=_PROCEDURE,
        # Without findings (triage had no AI scores) one group still names the images drafted from.
        imaging_measurements=[_group(r, sources) for r in results] or [_images_only(sources)],
    )
    root = report[0]
    root.ContentSequence.extend([
        _text(_PRIORITY, priority.value),
        *([] if urgency_score is None else [_number(_URGENCY, urgency_score)]),
        _text(codes.DCM.Comment, DISCLAIMER),
        _text(_DRAFT_MODEL, f"{model_id[:64]} ({model_version[:64]}), prompt {draft.prompt_version}"),
        _text(codes.DCM.Finding, draft.findings or "(none generated)"),
        _text(codes.DCM.Impression, draft.impression or "(none generated)"),
    ])

    sr = hd.sr.Comprehensive3DSR(
        evidence=sources,
        content=report,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=False,
        is_final=False,
        is_verified=False,  # → VerificationFlag UNVERIFIED; a person must verify, not us
        series_description=SERIES_DESCRIPTION,
        manufacturer_model_name="radtriage",
        software_versions=software,
        specific_character_set="ISO_IR 192",  # model text may hold any character
        # Coding Scheme Identification (SOP Common) declares the private scheme used above.
        coding_schemes=[CodingSchemeIdentificationItem(SCHEME, name="radtriage local codes")],
        contributing_equipment=[
            hd.ContributingEquipment(
                manufacturer=MANUFACTURER,
                purpose_of_reference=codes.DCM.ProcessingEquipment,
                manufacturer_model_name=model_id[:64],
                software_versions=[model_version[:64], draft.prompt_version[:64]],
                contribution_description="Draft findings by an AI model (UNVERIFIED, research use only)",
            )
        ],
    )
    return sr


def finding_concept(name: str) -> hd.sr.CodedConcept:
    """The coded finding: SNOMED CT where one is known, else a code of our private scheme; the
    SR and the HL7 result (OBX-3) name findings alike."""
    return _FINDING_CODES.get(name) or hd.sr.CodedConcept(name.upper()[:16], SCHEME, name.replace("_", " ").capitalize())


def _group(result: FindingResult, sources: Sequence[Dataset]) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 for one finding: coded finding, score and its kind, threshold, presence, algorithm."""
    finding = finding_concept(result.name)
    parameters = [f"policy {result.policy_version}", f"score kind {result.kind or 'not recorded'}"]
    if result.threshold is not None:
        parameters.append(f"threshold {result.threshold:.4g}")
    algorithm = hd.sr.AlgorithmIdentification(
        name=result.model_id[:64], version=result.model_version[:64], parameters=parameters
    )
    measurements = [hd.sr.Measurement(name=_SCORE_KINDS[result.kind], value=float(result.score), unit=_NO_UNITS,
                                      algorithm_id=algorithm)]
    if result.threshold is not None:
        measurements.append(hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=float(result.threshold),
                                              unit=_NO_UNITS))
    evaluations = []
    if result.present is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=finding, value=codes.SCT.Present if result.present else codes.SCT.Absent))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["radtriage-finding", str(sources[0].StudyInstanceUID), result.name]),
            identifier=result.name,
        ),
        finding_type=finding,
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID) for ds in sources],
    )


def _checked_sources(source_datasets: Sequence[Dataset]) -> list[Dataset]:
    """Header-only copies of the sources, all of one study, with type 2 attributes present."""
    if not source_datasets:
        raise ValueError("an SR needs at least one source image")
    sources = []
    for ds in source_datasets:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
            if not ds.get(keyword):
                raise ValueError(f"a source dataset has no {keyword}")
        header = Dataset()
        for element in ds:
            if element.tag >= 0x7FE00000:  # stop at pixel data: only headers are referenced
                break
            header.add(element)
        for keyword in _TYPE2_SOURCE:
            if keyword not in header:
                setattr(header, keyword, None)
        sources.append(header)
    if len({str(ds.StudyInstanceUID) for ds in sources}) != 1:
        raise ValueError("source datasets belong to different studies")
    return sources


def _images_only(sources: Sequence[Dataset]) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 without measurements: the images the draft came from, when no finding was scored."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(entropy_srcs=["radtriage-finding", str(sources[0].StudyInstanceUID), "none"]),
            identifier="no AI scores",
        ),
        source_images=[hd.sr.SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID) for ds in sources],
    )


# UT may hold CR, LF, FF and ESC but no other control character; model text can hold any.
_NOT_IN_UT = re.compile(r"[\x00-\x09\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f]")


def _text(name, value: str, relationship=_CONTAINS) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=_NOT_IN_UT.sub(" ", value), relationship_type=relationship)


def _number(name, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name=name, value=float(value), unit=_NO_UNITS, relationship_type=_CONTAINS)


def _device_observer(model_id: str) -> hd.sr.ObservationContext:
    """The model as the device that made the observations (same UID for the same model)."""
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["radtriage-model", model_id]),
        name=model_id[:64],
        manufacturer_name=MANUFACTURER,
        model_name=model_id[:64],
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _software_version() -> str:
    try:
        return metadata.version("radtriage")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


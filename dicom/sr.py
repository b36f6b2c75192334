"""Draft + triage → a DICOM Comprehensive SR in the source study, marked UNVERIFIED (highdicom).

The SR carries the draft FINDINGS and IMPRESSION, the UNVERIFIED/research-use notice,
the worklist priority, the urgency and finding scores, the model as device observer,
algorithm and contributing equipment, and references to the source images. Patient and
study come from the source instances, never retyped.

Content tree (Comprehensive SR, no template claimed)::

    CONTAINER  Diagnostic imaging report (LN 18748-4)
     ├ HAS CONCEPT MOD  TEXT Algorithm Name / Version / Parameter   (TID 4019)
     ├ HAS OBS CONTEXT  device observer = the model                  (TID 1004)
     ├ CONTAINS TEXT    Comment: UNVERIFIED AI DRAFT - for research use only ...
     ├ CONTAINS CONTAINER Findings    → TEXT Finding
     ├ CONTAINS CONTAINER Impressions → TEXT Impression
     ├ CONTAINS CONTAINER AI triage (99RADTRIAGE) → TEXT priority, NUM urgency, NUM per finding
     └ CONTAINS IMAGE   Source image (one per source instance)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Protocol

import highdicom as hd
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from common import DISCLAIMER, Priority

__all__ = ["DEFAULT_SERIES_NUMBER", "DraftLike", "build_draft_sr", "draft_sr_uids"]

DEFAULT_SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "UNVERIFIED AI DRAFT - research use only"
MANUFACTURER = "radtriage"
SCHEME = "99RADTRIAGE"  # a private coding scheme ("99" prefix, PS3.16 8.2)

_REPORT = hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report")
_TRIAGE = hd.sr.CodedConcept("TRIAGE", SCHEME, "AI triage")
_PRIORITY = hd.sr.CodedConcept("PRIORITY", SCHEME, "Worklist priority")
_URGENCY = hd.sr.CodedConcept("URGENCY", SCHEME, "Urgency score (0-100)")
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


def draft_sr_uids(study_instance_uid: str, key: str) -> tuple[str, str]:
    """Series and SOP Instance UIDs derived from the study and a key, e.g. ``"draft-42"``.

    The same inputs give the same UIDs, so sending a rebuilt SR again (a retry after a
    crash) replaces the copy the PACS already has instead of adding a second report.
    """
    series = generate_uid(entropy_srcs=["radtriage-draft-sr-series", study_instance_uid, key])
    instance = generate_uid(entropy_srcs=["radtriage-draft-sr-instance", study_instance_uid, key])
    return series, instance


def build_draft_sr(
    source_datasets: Sequence[Dataset],
    *,
    draft: DraftLike,
    priority: Priority | str,
    urgency_score: float | None,
    finding_scores: Mapping[str, float],
    model_version: str,
    model_id: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    series_number: int = DEFAULT_SERIES_NUMBER,
    instance_number: int = 1,
) -> Dataset:
    """Build the UNVERIFIED Comprehensive SR for one study's draft.

    Parameters
    ----------
    source_datasets : sequence of pydicom.Dataset
        The study's images the draft and scores came from (headers suffice; read with
        ``stop_before_pixels=True``); the first supplies patient and study.
    draft : DraftLike
        Findings, impression, model id and prompt version.
    priority : Priority or str
        The worklist priority.
    urgency_score : float or None
        0-100, or None when triage had no AI scores.
    finding_scores : mapping of str to float
        Score per finding name (policy names such as ``"pneumothorax"``).
    model_version : str
        Model revision (hub commit or folder hash), recorded with the algorithm.
    model_id : str, optional
        Defaults to ``draft.model_id``.
    series_instance_uid, sop_instance_uid : str, optional
        Default: fresh UIDs. Pass :func:`draft_sr_uids` to make retries idempotent.
    series_number, instance_number : int

    Returns
    -------
    pydicom.Dataset
        A ``highdicom.sr.ComprehensiveSR`` (a Dataset with file meta), Explicit VR Little
        Endian, ``VerificationFlag`` UNVERIFIED, ``CompletionFlag`` PARTIAL,
        ``PreliminaryFlag`` PRELIMINARY, in the source study, in a series of its own.

    Raises
    ------
    ValueError
        No sources; sources from several studies or missing UIDs; a score or urgency that
        is not a finite number (urgency outside 0-100); an unknown priority.
    """
    sources = _checked_sources(source_datasets)
    priority = Priority(priority)
    model_id = model_id or draft.model_id
    if urgency_score is not None and not (math.isfinite(urgency_score) and 0 <= urgency_score <= 100):
        raise ValueError(f"urgency_score must be in [0, 100], got {urgency_score!r}")
    bad = [name for name, value in finding_scores.items() if not math.isfinite(float(value))]
    if bad:
        raise ValueError(f"finding score(s) not finite: {', '.join(sorted(bad))}")
    software = _software_version()

    root = hd.sr.ContainerContentItem(name=_REPORT, template_id=None)
    root.ContentSequence = hd.sr.ContentSequence([
        *hd.sr.AlgorithmIdentification(
            name=model_id, version=model_version, parameters=[f"prompt {draft.prompt_version}"]
        ),
        *_device_observer(model_id),
        _text(codes.DCM.Comment, DISCLAIMER),
        _section(codes.DCM.Findings, codes.DCM.Finding, draft.findings),
        _section(codes.DCM.Impressions, codes.DCM.Impression, draft.impression),
        _triage(priority, urgency_score, finding_scores),
        *(_image(ds) for ds in sources),
    ])

    sr = hd.sr.ComprehensiveSR(
        evidence=sources,
        content=root,
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


def _text(name, value: str, relationship=_CONTAINS) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value, relationship_type=relationship)


def _section(heading, item, text: str) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(name=heading, relationship_type=_CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([_text(item, text or "(none generated)")])
    return container


def _triage(priority: Priority, urgency: float | None, scores: Mapping[str, float]) -> hd.sr.ContainerContentItem:
    items = [_text(_PRIORITY, priority.value)]
    if urgency is not None:
        items.append(_number(_URGENCY, urgency))
    for name, value in scores.items():
        items.append(_number(hd.sr.CodedConcept(f"SCORE-{name}", SCHEME, f"AI score: {name}"), value))
    container = hd.sr.ContainerContentItem(name=_TRIAGE, relationship_type=_CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _number(name, value: float) -> hd.sr.NumContentItem:
    return hd.sr.NumContentItem(name=name, value=float(value), unit=_NO_UNITS, relationship_type=_CONTAINS)


def _image(ds: Dataset) -> hd.sr.ImageContentItem:
    return hd.sr.ImageContentItem(
        name=codes.DCM.SourceImage,
        referenced_sop_class_uid=ds.SOPClassUID,
        referenced_sop_instance_uid=ds.SOPInstanceUID,
        relationship_type=_CONTAINS,
    )


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


"""The HTTP API's JSON: response models built from ``db/``'s rows, published in the OpenAPI schema."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from common import DraftStatus, ExportStatus, Priority, StudyStatus


def iso_utc(value: dt.datetime) -> str:
    """ISO 8601 as ``datetime.isoformat`` writes it (``+00:00``, not pydantic's ``Z``)."""
    return value.isoformat()


# Times leave as the strings the API has always sent; the schema still says date-time.
UtcTime = Annotated[
    dt.datetime,
    PlainSerializer(iso_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}),
]


class _Response(BaseModel):
    # Built from db/'s frozen dataclasses by attribute; nothing else may slip in.
    model_config = ConfigDict(from_attributes=True, extra="forbid", frozen=True)


class Draft(_Response):
    """A study's newest MedGemma draft: UNVERIFIED, never a diagnosis."""

    disclaimer: str = Field(description="shown above the draft wherever it appears; never removed")
    findings: str
    impression: str
    model_id: str
    prompt_version: str
    revision: int = Field(description="the study revision the draft was made from")
    sr_status: ExportStatus | None = Field(description="export as DICOM SR; null without an SR destination")


class DraftPreview(_Response):
    """The start of a draft's impression for the worklist, with its UNVERIFIED notice."""

    disclaimer: str = Field(description="shown with the preview wherever it appears; never removed")
    text: str = Field(description="the impression (else the findings), cut to about 160 characters")


class FindingChip(_Response):
    """One finding the AI scored on the newest revision, for the worklist's chips."""

    name: str
    score: float


class WorklistItem(_Response):
    """One study on the worklist, in the reading order."""

    study_instance_uid: str
    accession_number: str | None
    priority: Priority = Field(description="the effective priority to read by: never below ordered_priority")
    escalated: bool = Field(description="raised one step or more for waiting long (not clinically STAT)")
    escalated_from: Priority | None = Field(description="the class waiting raised it from; null when not escalated")
    ordered_priority: Priority = Field(description="the priority the clinician ordered")
    ai_priority: Priority | None = Field(description="what the order and the AI said together; null until triaged")
    urgency_score: float | None = Field(description="the AI's urgency, 0 to 100; null until triaged")
    status: StudyStatus
    findings: list[FindingChip] = Field(description="the AI's finding scores, highest first")
    reasons: list[str] = Field(description="why the priority is what it is")
    revision: int = Field(description="grows when a late image reopens the study")
    instances: int = Field(description="distinct SOP instances received (a revision or duplicate counts once)")
    received_at: UtcTime = Field(description="when the first image arrived: the wait counts from here")
    completed_at: UtcTime | None
    triaged_at: UtcTime | None
    draft_status: DraftStatus | None = Field(description="null until triage decides on a draft")
    draft_preview: DraftPreview | None
    claimed_by: str | None = Field(description="the reader who holds the study; null: unclaimed")
    claimed_at: UtcTime | None
    read_by: str | None
    read_at: UtcTime | None = Field(description="set: read, off the active worklist")
    viewer_url: str | None = Field(description="opens the study in the site's viewer; null without a viewer_url_template")


class Worklist(_Response):
    """A page of the worklist in reading order; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[WorklistItem]
    next_cursor: str | None = Field(description="null on the last page")


class Me(_Response):
    """Who the request was made as."""

    name: str
    role: Literal["reader", "admin"]


class StudyHeader(_Response):
    """Patient and study fields read from a stored image's DICOM header (signed-in users only)."""

    patient_name: str | None  # (0010,0010)
    patient_id: str | None  # (0010,0020)
    patient_birth_date: str | None  # (0010,0030)
    patient_sex: str | None  # (0010,0040)
    study_date: str | None  # (0008,0020)
    study_time: str | None  # (0008,0030)
    study_description: str | None  # (0008,1030)
    referring_physician: str | None  # (0008,0090)
    institution: str | None  # (0008,0080)


class FindingScore(_Response):
    """One finding's score with the threshold it is judged against and how that head was validated."""

    name: str
    score: float
    kind: str | None = Field(None, description="zero-shot (difference of cosines) or trained (a trained head's "
                             "score, calibrated to its training set's class balance, not this site's prevalence)")
    threshold: float | None = Field(description="the score at or above which the finding counts; null: none set")
    positive: bool | None = Field(description="score ≥ threshold; null without a threshold")
    validation: str | None = Field(description="how the finding's head was validated, if known")


class InstanceInfo(_Response):
    sop_instance_uid: str
    series_instance_uid: str
    modality: str | None
    view: str | None = Field(description="frontal or lateral, when the header says")
    view_position: str | None
    received_at: UtcTime


class HistoryEntry(_Response):
    at: UtcTime
    stage: str
    detail: str


class StudyDetail(_Response):
    """Everything about one study: its worklist item, header, scores, draft, images and history."""

    study: WorklistItem
    header: StudyHeader | None = Field(description="null when no stored image can be read")
    findings: list[FindingScore]
    reasons: list[str]
    draft: Draft | None
    instances: list[InstanceInfo] = Field(description="one per SOP instance (its newest revision)")
    revisions: list[InstanceInfo] = Field(
        default_factory=list,
        description="earlier revisions of these SOP instances (a changed image sent again), oldest first; "
                    "duplicates (the same image again, in any transfer syntax) are not kept")
    history: list[HistoryEntry] = Field(description="oldest first")


class ReadingState(_Response):
    """A study's claim and read state after an action."""

    study_instance_uid: str
    claimed_by: str | None
    claimed_at: UtcTime | None
    read_by: str | None
    read_at: UtcTime | None
    changed: bool = Field(description="false: the study already was so (e.g. claiming one's own claim again)")


class Problem(BaseModel):
    """An error: what went wrong, in words."""

    detail: str


class HealthComponent(BaseModel):
    """One component's state; each component adds its own details beside ``status``."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description='"ok", or what is wrong (e.g. "error", "missing", "disabled", "stopped")')


class Health(BaseModel):
    """``/healthz``: "ok" when every component is ok, else "degraded"."""

    status: Literal["ok", "degraded"]
    components: dict[str, HealthComponent]

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


class WorklistItem(_Response):
    """One study on the worklist, waiting-time escalation applied."""

    study_instance_uid: str
    accession_number: str | None
    priority: Priority = Field(description="the priority to read by: never below ordered_priority")
    escalated: bool = Field(description="raised one step or more for waiting long")
    ordered_priority: Priority = Field(description="the priority the clinician ordered")
    urgency_score: float | None = Field(description="the AI's urgency, 0 to 100; null until triaged")
    status: StudyStatus
    reasons: list[str] = Field(description="why the priority is what it is")
    revision: int = Field(description="grows when a late image reopens the study")
    instances: int
    received_at: UtcTime
    completed_at: UtcTime | None
    triaged_at: UtcTime | None
    draft_status: DraftStatus | None = Field(description="null until triage decides on a draft")
    draft: Draft | None


class Worklist(_Response):
    """The worklist in reading order: priority, then urgency score, then oldest first."""

    items: list[WorklistItem]


class HealthComponent(BaseModel):
    """One component's state; each component adds its own details beside ``status``."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description='"ok", or what is wrong (e.g. "error", "missing", "disabled", "stopped")')


class Health(BaseModel):
    """``/healthz``: "ok" when every component is ok, else "degraded"."""

    status: Literal["ok", "degraded"]
    components: dict[str, HealthComponent]

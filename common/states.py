"""The states a study, its draft and a draft's export move through (stored as their values)."""

from __future__ import annotations

import enum


class StudyStatus(enum.StrEnum):
    """Where a study is in the flow; the worklist shows all of them."""

    RECEIVING = "receiving"  # images arriving, completion not yet decided
    QUEUED = "queued"  # complete, triage task waiting
    TRIAGING = "triaging"
    TRIAGED = "triaged"
    FAILED = "failed"


class DraftStatus(enum.StrEnum):
    """Where a study's MedGemma draft is; a study has none until triage decides."""

    DISABLED = "disabled"  # no MedGemma weights: drafts are off
    QUEUED = "queued"
    DRAFTING = "drafting"
    DRAFTED = "drafted"
    FAILED = "failed"


class ExportStatus(enum.StrEnum):
    """Where the export of a draft as DICOM SR is; a draft has none without a destination."""

    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"
    FAILED = "failed"  # refused for good

"""The stages a study's history records, one event row each (stored as their values)."""

from __future__ import annotations

import enum


class EventStage(enum.StrEnum):
    COMPLETE = "complete"
    REOPENED = "reopened"
    TRIAGING = "triaging"
    RETRY = "retry"
    TRIAGED = "triaged"
    FAILED = "failed"
    REDRIVEN = "redriven"
    DRAFTING = "drafting"
    DRAFTED = "drafted"
    DRAFT_FAILED = "draft failed"
    SR_PENDING = "sr pending"
    SR_SENT = "sr sent"
    SR_FAILED = "sr failed"
    # The reading state: waiting raised the effective priority one step (the reason in the
    # detail); a radiologist claimed, released or read the study; an idle claim expired.
    ESCALATED = "escalated"
    CLAIMED = "claimed"
    RELEASED = "released"
    READ = "read"
    CLAIM_EXPIRED = "claim expired"

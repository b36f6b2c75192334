"""What radtriage delivers to a site's own systems (RIS, PACS, EHR, glue code), where, and how far each delivery got."""

from __future__ import annotations

import enum


class Content(enum.StrEnum):
    """What one delivery reports; each destination lists the contents it receives."""

    PRIORITY = "priority"  # the effective priority rose after triage or a draft
    ESCALATION = "escalation"  # waiting time raised the effective priority
    RESULT = "result"  # the preliminary AI result: per-finding scores
    DRAFT = "draft"  # the UNVERIFIED draft text

    @property
    def announces_priority(self) -> bool:
        """Whether this content carries a new effective priority (and can go stale)."""
        return self in (Content.PRIORITY, Content.ESCALATION)


class DeliveryStatus(enum.StrEnum):
    """Where one delivery to one destination is."""

    PENDING = "pending"  # waiting for its (next) attempt
    SENT = "sent"  # the peer acknowledged it
    DEAD = "dead"  # refused for good or out of attempts: a dead letter, with its reason
    DROPPED = "dropped"  # never sent: stale (a higher priority already went) or dropped by an admin


class DestinationKind(enum.StrEnum):
    """The kinds of destination a site can configure."""

    HL7V2 = "hl7v2"
    FHIR = "fhir"
    WEBHOOK = "webhook"
    DICOM_SR = "dicom-sr"

"""One delivery as a sender sees it (:class:`Notice`), what came of it (:class:`Outcome`) and the
one method every destination kind implements (:class:`Sender`)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Literal, Protocol

from common import Priority
from common.delivery import Content
from db.scores import FindingScore


@dataclasses.dataclass(frozen=True, slots=True)
class Notice:
    """One delivery to one destination, all a sender needs.

    The header fields (accession, order numbers, patient) come from the study's stored DICOM
    file; the rest is the snapshot taken when the change was committed.
    """

    delivery_id: int
    control_id: str  # unique per delivery, stable across retries: receivers deduplicate on it
    content: Content
    destination: str  # destination name (safe for logs)
    study_id: int  # internal id (safe for logs)
    study_instance_uid: str
    accession_number: str | None
    placer_order_number: str | None  # (0040,2016)
    filler_order_number: str | None  # (0040,2017)
    requested_procedure_id: str | None  # (0040,1001)
    patient_id: str | None
    patient_name: str | None  # DICOM PN text, e.g. "DOE^JANE"
    patient_birth_date: str | None  # YYYYMMDD
    patient_sex: str | None
    study_datetime: datetime.datetime | None
    ordered_priority: Priority
    priority: Priority  # the effective priority announced
    previous_priority: Priority | None
    escalated_from: Priority | None  # set for ESCALATION: the class waiting raised it from
    urgency_score: float | None
    reasons: tuple[str, ...]
    findings: tuple[FindingScore, ...]
    draft_findings: str | None
    draft_impression: str | None
    draft_model: str | None
    disclaimer: str  # common.DISCLAIMER
    created_at: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one attempt; ``refused`` is permanent and makes the delivery a dead letter."""

    result: Literal["delivered", "retry", "refused"]
    detail: str  # no PHI: status codes, ACK codes, error class
    peer_reply: str | None = None  # what the peer answered (shown by `deliveries test`, never logged)


class Sender(Protocol):
    """Delivers notices to one destination; never raises for network or peer trouble."""

    def send(self, notice: Notice) -> Outcome: ...

    def close(self) -> None: ...

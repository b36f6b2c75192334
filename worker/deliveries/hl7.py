"""HL7 v2.5.1 destinations over MLLP: a procedure update when the effective priority rises
(OMI^O23, or ORM^O01 for older systems) and a preliminary result (ORU^R01, OBR-25 = P) for a
result or a draft.

Every message is built and validated against the 2.5.1 message structures with hl7apy before it
leaves; one that cannot be built is refused for good (a dead letter). Each message waits for
its acknowledgement: AA (or CA) is delivered; AE, AR, CE, CR, no answer, a timeout or an
acknowledgement of another message are tried again with backoff. MSH-10 is the delivery's
control id, the same on every retry, so a receiver can drop a repeat. See docs/integration.md
for every field and where it comes from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import ssl
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Group, Message, Segment
from hl7apy.exceptions import HL7apyException, ValidationError
from hl7apy.factories import datatype_factory
from hl7apy.parser import parse_message

from common import Priority
from common.delivery import Content
from dicom.sr import SCHEME, finding_concept
from worker.deliveries.mllp import exchange
from worker.deliveries.notice import Notice, Outcome

__all__ = ["DEFAULT_PRIORITY_MAP", "VERSION", "Hl7Config", "Hl7Sender", "build_message", "parse_ack",
           "validate"]

VERSION = "2.5.1"
# HL7 table 0027 (priority): S stat, A as soon as possible, R routine.
DEFAULT_PRIORITY_MAP = {Priority.STAT.value: "S", Priority.URGENT.value: "A", Priority.ROUTINE.value: "R"}
# OBR-4 (required): the procedure, as radtriage knows it (a chest radiograph), in a local code.
PROCEDURE = ("CXR", "Chest radiograph", "L")
URGENCY_CODE = ("URGENCY", "AI urgency score (0-100)", SCHEME)
DRAFT_CODE = ("AIDRAFT", "UNVERIFIED AI draft report", SCHEME)
_DELIVERED, _ACCEPTED = {"AA", "CA"}, {"AA", "CA", "AE", "AR", "CE", "CR"}


@dataclasses.dataclass(frozen=True, slots=True)
class Hl7Config:
    """One HL7 v2 receiver (a RIS) over MLLP.

    Parameters
    ----------
    host, port : str, int
        Its MLLP listener.
    message_type : "OMI^O23" or "ORM^O01"
        The procedure update sent when the effective priority rises.
    sending_application, sending_facility, receiving_application, receiving_facility : str
        MSH-3 to MSH-6.
    processing_id : str
        MSH-11: P production, T training, D debugging.
    priority_map : mapping
        ``common.Priority`` value → the site's code for TQ1-9, OBR-27.6 and ORC-7.6.
    timeout : float
        Seconds to connect, and to wait for the acknowledgement.
    tls : ssl.SSLContext, optional
        Client TLS context; None: plain TCP.

    Raises
    ------
    ValueError
        An unknown message type, a non-positive timeout or a mapping key that is not a priority.
    """

    host: str
    port: int
    message_type: Literal["OMI^O23", "ORM^O01"] = "OMI^O23"
    sending_application: str = "RADTRIAGE"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    processing_id: str = "P"
    priority_map: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PRIORITY_MAP))
    timeout: float = 10.0
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if self.message_type not in ("OMI^O23", "ORM^O01"):
            raise ValueError(f"HL7 message_type must be OMI^O23 or ORM^O01, not {self.message_type!r}")
        if self.timeout <= 0:
            raise ValueError("an HL7 timeout must be positive")
        if unknown := set(self.priority_map) - {p.value for p in Priority}:
            raise ValueError(f"priority_map keys must be priorities, not {', '.join(sorted(unknown))}")

    def code(self, priority: Priority) -> str:
        return self.priority_map.get(priority.value) or DEFAULT_PRIORITY_MAP[priority.value]


class Hl7Sender:
    """Sends each notice as one HL7 message and reads its acknowledgement; never raises."""

    def __init__(self, config: Hl7Config) -> None:
        self.config = config

    def send(self, notice: Notice) -> Outcome:
        config = self.config
        try:
            # Timed at the change, not the attempt: every retry sends the very same bytes.
            message = build_message(notice, config, now=notice.created_at)
        except (HL7apyException, ValueError) as exc:
            return Outcome("refused", f"message not built: {type(exc).__name__}")
        kind = message.msh.msh_9.msg_1.value + "^" + message.msh.msh_9.msg_2.value
        try:
            reply = exchange(message.to_er7(), host=config.host, port=config.port, timeout=config.timeout,
                             tls=config.tls)
        except OSError as exc:
            return Outcome("retry", f"{kind}: {type(exc).__name__}")
        try:
            code, acked = parse_ack(reply)
        except (HL7apyException, ValueError, AttributeError) as exc:
            return Outcome("retry", f"{kind}: unreadable acknowledgement ({type(exc).__name__})", reply)
        if acked != notice.control_id:
            return Outcome("retry", f"{kind}: acknowledgement of another message", reply)
        if code in _DELIVERED:
            return Outcome("delivered", f"{kind}: {code}", reply)
        return Outcome("retry", f"{kind}: {code if code in _ACCEPTED else 'unknown code'}", reply)

    def close(self) -> None:
        """Nothing held: one connection per message."""


def parse_ack(text: str) -> tuple[str, str]:
    """The acknowledgement code (MSA-1) and the control id it acknowledges (MSA-2).

    Raises
    ------
    hl7apy.exceptions.HL7apyException, ValueError
        Not an HL7 message with an MSA segment.
    """
    ack = parse_message(text.strip().replace("\n", "\r"), validation_level=VALIDATION_LEVEL.TOLERANT,
                        find_groups=False)
    msa = ack.msa
    return msa.msa_1.value.strip().upper(), msa.msa_2.value.strip()


def build_message(notice: Notice, config: Hl7Config, *, now: dt.datetime | None = None) -> Message:
    """The validated message for ``notice``: a procedure update for a priority or escalation, a
    preliminary ORU^R01 for a result or a draft; ``now`` times it (MSH-7, ORC-9, OBR-22).

    Raises
    ------
    ValueError
        Nothing identifies the order (no accession, placer or filler order number).
    hl7apy.exceptions.HL7apyException
        The message does not validate against the 2.5.1 structure.
    """
    if not (notice.accession_number or notice.placer_order_number or notice.filler_order_number):
        raise ValueError("no accession or order number to key the message on")
    now = now or dt.datetime.now(dt.UTC)
    if notice.content.announces_priority:
        kind, trigger = config.message_type.split("^")
    else:
        kind, trigger = "ORU", "R01"
    message = Message(f"{kind}_{trigger}", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    _header(message.msh, config, notice, f"{kind}^{trigger}^{kind}_{trigger}", now)
    if kind == "OMI":
        _omi(message, notice, config, now)
    elif kind == "ORM":
        _orm(message, notice, config, now)
    else:
        _oru(message, notice, config, now)
    validate(message)
    return message


# hl7apy checks a choice group as a sequence: ORM^O01's OBR|RQD|RQ1|RXO|ODS|ODT choice would need
# all six. Every other error stands.
_CHOICE_MISSING = re.compile(r"^Error: Missing required child ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP\.(RQD|RQ1|RXO|ODS|ODT)$")


def validate(message: Message) -> None:
    """Validate against the 2.5.1 structure.

    Raises
    ------
    hl7apy.exceptions.ValidationError
        The first error, with how many there were.
    """
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.txt"
        try:
            message.validate(report_file=str(report))
        except ValidationError:
            errors = [line for line in report.read_text().splitlines()
                      if line.startswith("Error:") and not _CHOICE_MISSING.match(line)]
            if errors:
                raise ValidationError(f"{errors[0]} ({len(errors)} error(s))") from None


# -- segments --------------------------------------------------------------------------------


def _text(value: object, datatype: str = "ST") -> str:
    """``value`` escaped for one component (| ^ & ~ \\ become escape sequences)."""
    return datatype_factory(datatype, str(value), version=VERSION,
                            validation_level=VALIDATION_LEVEL.TOLERANT).to_er7()


def _components(*values: object) -> str:
    return "^".join("" if v is None else _text(v) for v in values).rstrip("^")


def _when(value: dt.datetime) -> str:
    """An HL7 DTM: with its offset when ``value`` knows its zone (a DICOM local time may not)."""
    return value.strftime("%Y%m%d%H%M%S%z")


def _header(msh: Segment, config: Hl7Config, notice: Notice, message_type: str, now: dt.datetime) -> None:
    msh.msh_3 = _text(config.sending_application)
    msh.msh_4 = _text(config.sending_facility)
    msh.msh_5 = _text(config.receiving_application)
    msh.msh_6 = _text(config.receiving_facility)
    msh.msh_7 = _when(now)
    msh.msh_9 = message_type
    msh.msh_10 = _text(notice.control_id)
    msh.msh_11 = config.processing_id
    msh.msh_12 = VERSION
    msh.msh_18 = "UNICODE UTF-8"


def _pid(group: Group, notice: Notice) -> None:
    pid = group.add_segment("PID")
    pid.pid_1 = "1"
    # PID-3 and PID-5 are required: HL7's explicit null ("") where the header has none.
    pid.pid_3 = _components(notice.patient_id, None, None, None, "MR") if notice.patient_id else '""'
    pid.pid_5 = _name(notice.patient_name)
    if notice.patient_birth_date and notice.patient_birth_date.isdigit():
        pid.pid_7 = notice.patient_birth_date
    if notice.patient_sex:
        pid.pid_8 = notice.patient_sex if notice.patient_sex in ("M", "F", "O") else "U"


def _name(pn: str | None) -> str:
    """A DICOM PN (family^given^middle^prefix^suffix) as an XPN (family^given^middle^suffix^prefix)."""
    if not pn:
        return '""'
    parts = (pn.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = parts
    return _components(family, given, middle, suffix, prefix) or '""'


def _orc(group: Group, notice: Notice, control: str, now: dt.datetime) -> Segment:
    orc = group.add_segment("ORC")
    orc.orc_1 = control
    if notice.placer_order_number:
        orc.orc_2 = _text(notice.placer_order_number)
    if notice.filler_order_number:
        orc.orc_3 = _text(notice.filler_order_number)
    orc.orc_9 = _when(now)
    return orc


def _obr(group: Group, notice: Notice, config: Hl7Config) -> Segment:
    obr = group.add_segment("OBR")
    obr.obr_1 = "1"
    if notice.placer_order_number:
        obr.obr_2 = _text(notice.placer_order_number)
    if notice.filler_order_number:
        obr.obr_3 = _text(notice.filler_order_number)
    obr.obr_4 = _components(*PROCEDURE)
    if notice.accession_number:
        obr.obr_18 = _text(notice.accession_number)
    if notice.requested_procedure_id:
        obr.obr_19 = _text(notice.requested_procedure_id)
    obr.obr_27 = _priority_tq(notice, config)
    return obr


def _priority_tq(notice: Notice, config: Hl7Config) -> str:
    # TQ component 6 is the priority (OBR-27.6, ORC-7.6).
    return "^^^^^" + _text(config.code(notice.priority))


def _nte(group: Group, lines: Sequence[str]) -> None:
    if not lines:
        return
    nte = group.add_segment("NTE")
    nte.nte_1 = "1"
    for line in lines:
        nte.add_field("NTE_3").value = _text(line, "FT")


def _why(notice: Notice) -> list[str]:
    raised = f"AI triage: effective priority {notice.priority.value}"
    if notice.previous_priority is not None:
        raised += f" (was {notice.previous_priority.value})"
    if notice.escalated_from is not None and notice.content is Content.ESCALATION:
        raised += f", escalated from {notice.escalated_from.value} by waiting time"
    return [raised, *notice.reasons]


def _omi(message: Message, notice: Notice, config: Hl7Config, now: dt.datetime) -> None:
    _pid(message.add_group("OMI_O23_PATIENT"), notice)
    order = message.add_group("OMI_O23_ORDER")
    _orc(order, notice, "XO", now)  # XO: change order request
    tq1 = order.add_group("OMI_O23_TIMING").add_segment("TQ1")
    tq1.tq1_1 = "1"
    tq1.tq1_9 = _text(config.code(notice.priority))
    _obr(order, notice, config)
    _nte(order, _why(notice))
    ipc = order.add_segment("IPC")
    # IPC-1 to IPC-4 are required; radtriage does not know the scheduled step: IPC-4 repeats the
    # requested procedure (or the accession), which identifies the step of a one-step chest X-ray.
    key = notice.requested_procedure_id or notice.accession_number or '""'
    ipc.ipc_1 = _text(notice.accession_number) if notice.accession_number else '""'
    ipc.ipc_2 = _text(key) if key != '""' else key
    ipc.ipc_3 = _text(notice.study_instance_uid)
    ipc.ipc_4 = ipc.ipc_2.value


def _orm(message: Message, notice: Notice, config: Hl7Config, now: dt.datetime) -> None:
    _pid(message.add_group("ORM_O01_PATIENT"), notice)
    order = message.add_group("ORM_O01_ORDER")
    orc = _orc(order, notice, "XO", now)
    orc.orc_7 = _priority_tq(notice, config)
    detail = order.add_group("ORM_O01_ORDER_DETAIL")
    _obr(detail.add_group("ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP"), notice, config)
    _nte(detail, _why(notice))


def _oru(message: Message, notice: Notice, config: Hl7Config, now: dt.datetime) -> None:
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    _pid(result.add_group("ORU_R01_PATIENT"), notice)
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    _orc(order, notice, "RE", now)  # RE: observations to follow
    obr = _obr(order, notice, config)
    if notice.study_datetime is not None:
        obr.obr_7 = _when(notice.study_datetime)
    obr.obr_22 = _when(now)
    obr.obr_25 = "P"  # preliminary
    observations: list[tuple[str, str, list[str], str, list[str]]] = []
    if notice.urgency_score is not None:
        observations.append(("NM", _components(*URGENCY_CODE), [f"{notice.urgency_score:.1f}"], "", []))
    for finding in notice.findings:
        concept = finding_concept(finding.name)
        flag = {True: "A", False: "N", None: ""}[finding.positive]
        note = [f"{finding.kind or 'unrecorded'} score"
                + ("" if finding.threshold is None else f", threshold {finding.threshold:.4g}")
                + ("" if finding.validated is None else f", validated {'yes' if finding.validated else 'no'}")]
        observations.append(("NM", _components(concept.value, concept.meaning, concept.scheme_designator),
                             [f"{finding.score:.4g}"], flag, note))
    if notice.content is Content.DRAFT:
        lines = [notice.disclaimer]
        for title, text in (("Findings", notice.draft_findings), ("Impression", notice.draft_impression)):
            if text:
                lines += [f"{title}:", *(line for line in text.splitlines() if line.strip())]
        if notice.draft_model:
            lines.append(f"Model: {notice.draft_model}")
        observations.append(("TX", _components(*DRAFT_CODE), lines, "", [notice.disclaimer]))
    for number, (value_type, code, values, flag, notes) in enumerate(observations, start=1):
        group = order.add_group("ORU_R01_OBSERVATION")
        obx = group.add_segment("OBX")
        obx.obx_1 = str(number)
        obx.obx_2 = value_type
        obx.obx_3 = code
        for value in values:  # one repetition per line of text
            obx.add_field("OBX_5").value = _text(value, "TX")
        if flag:
            obx.obx_8 = flag
        obx.obx_11 = "P"
        obx.obx_14 = _when(notice.created_at)
        _nte(group, notes)

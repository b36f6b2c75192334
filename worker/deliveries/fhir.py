"""FHIR R4 destinations: a priority change reaches the order (the ``ServiceRequest`` found by its
accession number, or a new ``Task`` on it), and a preliminary result or draft becomes a
``DiagnosticReport`` (status preliminary) with one ``Observation`` per finding, referencing
the ``ImagingStudy`` by its Study Instance UID.

Every resource is built and validated with ``fhir.resources`` (the R4B models: R4B changed
none of the elements used here from R4) before it leaves. Every resource we create carries the
delivery's control id as an identifier (system :data:`DELIVERY_SYSTEM`) and is created
conditionally on it (``If-None-Exist``), so a retry after a lost answer creates nothing twice.
See docs/integration.md for every element and where it comes from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from common import DISCLAIMER, Priority
from common.delivery import Content
from worker.deliveries.http_client import (
    HttpSender,
    check_priority_map,
    error_outcome,
    reply_text,
    status_outcome,
)
from worker.deliveries.notice import Notice, Outcome

__all__ = [
    "DEFAULT_PRIORITY_MAP", "DELIVERY_SYSTEM", "DICOM_UID_SYSTEM", "FINDING_SYSTEM", "PRIORITY_CODES", "FhirConfig",
    "FhirSender", "diagnostic_report_bundle", "task_for",
]

PRIORITY_CODES = ("routine", "urgent", "asap", "stat")  # FHIR request-priority, least urgent first
DEFAULT_PRIORITY_MAP = {Priority.ROUTINE.value: "routine", Priority.URGENT.value: "urgent", Priority.STAT.value: "stat"}
DICOM_UID_SYSTEM = "urn:dicom:uid"  # ImagingStudy.identifier: the Study Instance UID as urn:oid:
DELIVERY_SYSTEM = "urn:radtriage:delivery"  # identifier of what we create: the control id, for deduplication
FINDING_SYSTEM = "urn:radtriage:finding"  # Observation.code: radtriage's finding names
ACCESSION_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
CONFLICT_TRIES = 3  # a ServiceRequest changed under us (409/412): read it again and retry this often
_FHIR_JSON = "application/fhir+json"
_UCUM = "http://unitsofmeasure.org"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


@dataclasses.dataclass(frozen=True, slots=True)
class FhirConfig:
    """One FHIR R4 destination.

    Parameters
    ----------
    base_url : str
        The server's base (``https://ris.example/fhir``); searches and writes go below it.
    mode : "service-request" or "task"
        How a priority change is announced: set ``priority`` of the ``ServiceRequest`` whose
        identifier is the accession number (never lowered), or create a ``Task`` (intent
        order, code fulfill) with the priority, focused on that ``ServiceRequest``.
    bearer_token : str, optional
        Sent as ``Authorization: Bearer``.
    client_cert, client_key : str, optional
        PEM files presented for mutual TLS.
    ca_bundle : str, optional
        PEM CAs the server's certificate must chain to; default: the system's.
    timeout : float
        Seconds for connecting and for each read; past it the delivery is retried.
    priority_map : mapping
        ``common.Priority`` value → ``routine|urgent|asap|stat``.
    accession_system : str, optional
        The system of the accession identifier on the site's ServiceRequests; None: match
        the accession number under any system.
    patient_id_system : str, optional
        The system of the DICOM Patient ID (the MRN) for ``subject``/``for`` references;
        None: no patient reference at all (the study and order identify the patient).

    Raises
    ------
    ValueError
        An unknown mode, a non-http(s) URL, a client certificate without its key, or a
        mapping key or code outside the two vocabularies.
    """

    base_url: str
    mode: Literal["service-request", "task"] = "service-request"
    bearer_token: str | None = dataclasses.field(default=None, repr=False)
    client_cert: str | None = None
    client_key: str | None = None
    ca_bundle: str | None = None
    timeout: float = 10.0
    priority_map: Mapping[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_PRIORITY_MAP))
    accession_system: str | None = None
    patient_id_system: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("service-request", "task"):
            raise ValueError(f"FHIR mode must be service-request or task, not {self.mode!r}")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError("a FHIR base_url must be an http(s) URL")
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError("mutual TLS needs both client_cert and client_key")
        check_priority_map(self.priority_map, allowed=PRIORITY_CODES, what="FHIR request priority")
        if self.timeout <= 0:
            raise ValueError("a FHIR timeout must be positive")

    def code(self, priority: Priority) -> str:
        """The FHIR priority code for ``priority``."""
        return self.priority_map.get(priority.value, DEFAULT_PRIORITY_MAP[priority.value])


class _Refused(Exception):
    """A delivery the peer or its data cannot take, ever: the message is the outcome's detail (no
    PHI); ``reply`` what the server answered, for the operator."""

    def __init__(self, message: str, reply: httpx.Response | None = None) -> None:
        super().__init__(message)
        self.reply = None if reply is None else reply_text(reply)


class FhirSender(HttpSender):
    """Sends notices to one FHIR server; one HTTP client (connection pool) per sender.

    Never raises for the network or the peer: every problem is an :class:`Outcome`.
    """

    def __init__(self, config: FhirConfig, *, client: httpx.Client | None = None) -> None:
        headers = {"Accept": _FHIR_JSON}
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        super().__init__(timeout=config.timeout, ca_bundle=config.ca_bundle, client_cert=config.client_cert,
                         client_key=config.client_key, headers=headers, client=client)
        self.config = config

    def send(self, notice: Notice) -> Outcome:
        what = "FHIR"
        try:
            if notice.content in (Content.PRIORITY, Content.ESCALATION):
                if self.config.mode == "task":
                    what = "POST Task"
                    return self._create(task_for(notice, self.config), what)
                what = "ServiceRequest update"
                return self._update_service_request(notice)
            what = "POST transaction (DiagnosticReport)"
            return self._post(self.config.base_url, diagnostic_report_bundle(notice, self.config), what, headers={})
        except _Refused as exc:
            return Outcome("refused", str(exc), exc.reply)
        except ValidationError as exc:
            # Where the resource failed, never the offending value (it may be patient data).
            places = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
            return Outcome("refused", f"{what}: resource does not validate as FHIR R4 at {', '.join(places)}")
        except httpx.HTTPError as exc:
            return error_outcome(exc, what)
        except OSError as exc:  # certificate files unreadable: the operator must fix the configuration
            return Outcome("retry", f"{what}: TLS files unreadable ({type(exc).__name__})")

    # ---- requests -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/{path}"

    def _post(self, url: str, resource: Any, what: str, *, headers: dict[str, str]) -> Outcome:
        response = self._http().post(url, content=resource.model_dump_json(),
                                     headers={"Content-Type": _FHIR_JSON, **headers})
        return status_outcome(response, what)

    def _create(self, resource: Task, what: str) -> Outcome:
        # Conditional create: a retry after a lost answer finds the first one instead.
        exists = f"identifier={DELIVERY_SYSTEM}|{resource.identifier[0].value}"
        return self._post(self._url(resource.get_resource_type()), resource, what, headers={"If-None-Exist": exists})

    def _update_service_request(self, notice: Notice) -> Outcome:
        if not notice.accession_number:
            raise _Refused("ServiceRequest update: the study has no accession number to find its order by")
        wanted = self.config.code(notice.priority)
        system = f"{self.config.accession_system}|" if self.config.accession_system else ""
        outcome = Outcome("retry", "ServiceRequest update: not tried")
        for _ in range(CONFLICT_TRIES):
            # A search by POST: the accession travels in the body, never in a URL that proxies,
            # servers and httpx's own request log would record.
            found = self._http().post(self._url("ServiceRequest/_search"),
                                      data={"identifier": f"{system}{notice.accession_number}"})
            if not found.is_success:
                return status_outcome(found, "ServiceRequest search")
            raw = _only_match(found)
            request = ServiceRequest.model_validate(raw)
            where = f"ServiceRequest/{request.id}"
            if _rank(request.priority) >= PRIORITY_CODES.index(wanted):
                # Never lowered: the order (or an earlier update) already asks for as much or more.
                return Outcome("delivered", f"{where} already {request.priority or 'routine'}", reply_text(found))
            updated = ServiceRequest.model_validate({**raw, "priority": wanted})
            headers = {"Content-Type": _FHIR_JSON}
            if request.meta is not None and request.meta.versionId:
                headers["If-Match"] = f'W/"{request.meta.versionId}"'  # lost-update guard: 412 if it moved
            response = self._http().put(self._url(where), content=updated.model_dump_json(), headers=headers)
            outcome = status_outcome(response, f"PUT {where} priority {wanted}")
            if response.status_code not in (409, 412):
                return outcome
        return outcome  # still conflicting after re-reading: retried later


def _only_match(response: httpx.Response) -> dict[str, Any]:
    try:
        bundle = response.json()
    except ValueError:
        raise _Refused("ServiceRequest search: the answer is not JSON", response) from None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _Refused("ServiceRequest search: the answer is not a FHIR Bundle", response)
    matches = [entry["resource"] for entry in bundle.get("entry") or ()
               if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
               and entry["resource"].get("resourceType") == "ServiceRequest"
               and (entry.get("search") or {}).get("mode", "match") == "match"]
    if len(matches) != 1:
        raise _Refused(f"ServiceRequest search: {len(matches)} ServiceRequests have the accession number, "
                       "need exactly one", response)
    return matches[0]


def _rank(code: str | None) -> int:
    # An order without a priority is routine (FHIR: "normal priority" when absent).
    return PRIORITY_CODES.index(code) if code in PRIORITY_CODES else 0


# ---- resources ----------------------------------------------------------------------------------

def _instant(value: dt.datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def _identifier(value: str) -> dict[str, str]:
    return {"system": DELIVERY_SYSTEM, "value": value}


def _imaging_study(notice: Notice) -> dict[str, Any]:
    return {"type": "ImagingStudy",
            "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{notice.study_instance_uid}"}}


def _order(notice: Notice, config: FhirConfig) -> dict[str, Any] | None:
    if not notice.accession_number:
        return None
    identifier = {"type": ACCESSION_TYPE, "value": notice.accession_number}
    if config.accession_system:
        identifier["system"] = config.accession_system
    return {"type": "ServiceRequest", "identifier": identifier}


def _patient(notice: Notice, config: FhirConfig) -> dict[str, Any] | None:
    if not (notice.patient_id and config.patient_id_system):
        return None
    return {"type": "Patient", "identifier": {"system": config.patient_id_system, "value": notice.patient_id}}


def _why(notice: Notice) -> str:
    if notice.content is Content.ESCALATION and notice.escalated_from is not None:
        return f"raised from {notice.escalated_from.value} for waiting time (not a clinical finding)"
    was = f" from {notice.previous_priority.value}" if notice.previous_priority else ""
    return f"raised{was} by AI triage (research use, not a diagnosis)"


def task_for(notice: Notice, config: FhirConfig) -> Task:
    """The ``Task`` announcing ``notice``'s priority, focused on the order (else the study)."""
    order = _order(notice, config)
    body: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [_identifier(notice.control_id)],
        "status": "requested",
        "intent": "order",
        "priority": config.code(notice.priority),
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}],
                 "text": "Read the imaging study with this priority"},
        "description": " ".join([f"Read as {notice.priority.value}: {_why(notice)}.", "; ".join(notice.reasons)]).strip(),
        "focus": order or _imaging_study(notice),
        "authoredOn": _instant(notice.created_at),
        "reasonCode": {"text": _why(notice)},
    }
    if order:
        body["basedOn"] = [order]
    if patient := _patient(notice, config):
        body["for"] = patient
    return Task.model_validate(body)


def _conclusion(notice: Notice) -> str:
    disclaimer = notice.disclaimer or DISCLAIMER
    lines = [disclaimer if "UNVERIFIED" in disclaimer else f"UNVERIFIED AI DRAFT. {disclaimer}"]
    score = "" if notice.urgency_score is None else f", urgency {notice.urgency_score:.0f}/100"
    lines.append(f"AI triage priority {notice.priority.value}{score}.")
    if notice.content is Content.DRAFT:
        lines.append(f"Findings (UNVERIFIED AI draft): {notice.draft_findings or ''}".rstrip())
        lines.append(f"Impression (UNVERIFIED AI draft): {notice.draft_impression or ''}".rstrip())
    return "\n\n".join(lines)


def _observation(notice: Notice, config: FhirConfig, index: int, finding) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [_identifier(f"{notice.control_id}-{index}")],
        "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "imaging"}]}],
        "code": {"coding": [{"system": FINDING_SYSTEM, "code": finding.name, "display": finding.name}],
                 "text": f"{finding.name} (AI score, UNVERIFIED)"},
        "issued": _instant(notice.created_at),
        "valueQuantity": {"value": round(float(finding.score), 6), "unit": "score", "system": _UCUM, "code": "1"},
        "derivedFrom": [_imaging_study(notice)],
        "device": {"display": "radtriage AI triage (research use, not a diagnosis)"},
    }
    if finding.kind:
        body["method"] = {"text": finding.kind + ("" if finding.validated is not False else ", not validated locally")}
    if finding.threshold is not None:
        positive = finding.score >= finding.threshold
        body["interpretation"] = [{"coding": [{"system": _INTERPRETATION, "code": "POS" if positive else "NEG"}]}]
        body["referenceRange"] = [{"text": f"positive at a score of {finding.threshold:g} or more"}]
    if notice.study_datetime is not None:
        body["effectiveDateTime"] = _instant(notice.study_datetime)
    if patient := _patient(notice, config):
        body["subject"] = patient
    return body


def diagnostic_report_bundle(notice: Notice, config: FhirConfig) -> Bundle:
    """A transaction: one ``Observation`` per finding and the preliminary ``DiagnosticReport``
    listing them, each created only if no resource has its identifier yet."""
    entries = []
    results = []
    for index, finding in enumerate(notice.findings, start=1):
        observation = Observation.model_validate(_observation(notice, config, index, finding))
        # Stable per delivery and finding: a retried transaction names the same resources.
        full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{DELIVERY_SYSTEM}:{notice.control_id}:{index}')}"
        entries.append(_entry(full_url, observation))
        results.append({"reference": full_url})
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [_identifier(notice.control_id)],
        "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}],
                 "text": "AI triage of a chest radiograph (preliminary, UNVERIFIED)"},
        "issued": _instant(notice.created_at),
        "imagingStudy": [_imaging_study(notice)],
        "result": results,
        "conclusion": _conclusion(notice),
    }
    if order := _order(notice, config):
        report["basedOn"] = [order]
    if notice.study_datetime is not None:
        report["effectiveDateTime"] = _instant(notice.study_datetime)
    if patient := _patient(notice, config):
        report["subject"] = patient
    full_url = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{DELIVERY_SYSTEM}:{notice.control_id}')}"
    entries.append(_entry(full_url, DiagnosticReport.model_validate(report)))
    return Bundle.model_validate({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def _entry(full_url: str, resource) -> dict[str, Any]:
    kind = resource.get_resource_type()
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": kind,
                        "ifNoneExist": f"identifier={DELIVERY_SYSTEM}|{resource.identifier[0].value}"}}

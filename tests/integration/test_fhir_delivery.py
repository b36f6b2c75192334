"""FHIR deliveries against a real HTTP server started here that records every request: what
reaches the server validates as FHIR R4 (fhir.resources), and each answer (200, 409, 412, 500,
4xx, a timeout, a closed port) becomes the outcome the dispatcher acts on."""

from __future__ import annotations

import dataclasses
import json
import logging
import ssl
from urllib.parse import parse_qs

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from common import DISCLAIMER, Priority
from common.delivery import Content
from tests.integration.http_recorder import Recorder, Reply, Request
from tests.integration.notice_factory import ACCESSION, PATIENT_DATA, PATIENT_ID, notice
from worker.deliveries.fhir import CONFLICT_TRIES, DELIVERY_SYSTEM, FhirConfig, FhirSender

ACCESSION_SYSTEM = "http://hospital.example/accession"
TOKEN = "s3cr3t-token"
UID = "1.2.826.0.1.3680043.8.498.1"


def order(version: int, priority: str | None = "routine") -> dict:
    """The site's ServiceRequest for the study, as the server holds it at ``version``."""
    resource = {"resourceType": "ServiceRequest", "id": "sr-1", "meta": {"versionId": str(version)},
                "identifier": [{"system": ACCESSION_SYSTEM, "value": ACCESSION}], "status": "active",
                "intent": "order", "code": {"text": "XR chest PA"},
                "subject": {"reference": "Patient/p-1"}, "note": [{"text": "kept as it was"}]}
    if priority:
        resource["priority"] = priority
    return resource


def searchset(*resources: dict) -> Reply:
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    return Reply(200, json.dumps(bundle), {"Content-Type": "application/fhir+json"})


def searching(request: Request) -> bool:
    return (request.method, request.path) == ("POST", "/fhir/ServiceRequest/_search")


def kinds(server: Recorder) -> list[str]:
    return ["search" if searching(r) else r.method for r in server.requests]


def config(url: str, **changes) -> FhirConfig:
    return dataclasses.replace(FhirConfig(base_url=f"{url}/fhir", bearer_token=TOKEN, timeout=0.5,
                                          accession_system=ACCESSION_SYSTEM,
                                          patient_id_system="urn:oid:1.2.3.4.5"), **changes)


def send(server: Recorder, item, **changes):
    sender = FhirSender(config(server.url, **changes))
    try:
        return sender.send(item)
    finally:
        sender.close()


def free_of_patient_data(text: str) -> bool:
    return not any(value in text for value in PATIENT_DATA)


def test_the_matching_service_request_gets_the_mapped_priority_and_nothing_else_changes():
    def answer(request: Request) -> Reply:
        return searchset(order(3)) if searching(request) else Reply(200, json.dumps(order(4, "stat")))

    with Recorder(answer) as server:
        outcome = send(server, notice(Content.PRIORITY))

    assert outcome.result == "delivered", outcome
    search, put = server.requests
    assert (search.method, search.path, search.query) == ("POST", "/fhir/ServiceRequest/_search", {})
    assert search.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(search.body.decode()) == {"identifier": [f"{ACCESSION_SYSTEM}|{ACCESSION}"]}
    assert (put.method, put.path) == ("PUT", "/fhir/ServiceRequest/sr-1")
    assert put.headers["if-match"] == 'W/"3"'  # the version read: a change in between answers 412
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in server.requests)
    sent = ServiceRequest.model_validate_json(put.body)
    assert sent.priority == "stat"
    before = ServiceRequest.model_validate(order(3))
    assert json.loads(sent.model_dump_json()) | {"priority": "routine"} == json.loads(before.model_dump_json())
    assert free_of_patient_data(outcome.detail)


def test_a_conflict_reads_the_order_again_and_retries_with_its_new_version():
    puts = []

    def answer(request: Request) -> Reply:
        if searching(request):
            return searchset(order(3 + len(puts)))
        puts.append(request)
        return Reply(412 if len(puts) == 1 else 200)

    with Recorder(answer) as server:
        outcome = send(server, notice(Content.ESCALATION, priority=Priority.URGENT, escalated_from=Priority.ROUTINE))

    assert outcome.result == "delivered"
    assert kinds(server) == ["search", "PUT", "search", "PUT"]
    assert [p.headers["if-match"] for p in puts] == ['W/"3"', 'W/"4"']
    assert ServiceRequest.model_validate_json(puts[1].body).priority == "urgent"


def test_an_order_that_keeps_changing_is_retried_later():
    with Recorder(lambda r: searchset(order(1)) if searching(r) else Reply(409)) as server:
        outcome = send(server, notice())
    assert outcome.result == "retry" and "409" in outcome.detail
    assert kinds(server) == ["search", "PUT"] * CONFLICT_TRIES


def test_an_order_already_as_urgent_is_never_lowered():
    with Recorder(lambda r: searchset(order(5, "stat"))) as server:
        outcome = send(server, notice(priority=Priority.URGENT))
    assert outcome.result == "delivered" and "already stat" in outcome.detail
    assert kinds(server) == ["search"]


@pytest.mark.parametrize("found", [(), (order(1), {**order(1), "id": "sr-2"})], ids=["none", "two"])
def test_no_single_matching_order_is_a_dead_letter(found):
    with Recorder(lambda r: searchset(*found)) as server:
        outcome = send(server, notice())
    assert outcome.result == "refused" and f"{len(found)} ServiceRequests" in outcome.detail
    assert free_of_patient_data(outcome.detail)
    assert '"searchset"' in outcome.peer_reply  # `radtriage deliveries test` shows what the server found


def test_task_mode_creates_one_task_per_delivery_focused_on_the_order():
    with Recorder(lambda r: Reply(201, json.dumps({"resourceType": "Task", "id": "t-1"}))) as server:
        outcome = send(server, notice(priority=Priority.URGENT), mode="task",
                       priority_map={"ROUTINE": "routine", "URGENT": "asap", "STAT": "stat"})

    assert outcome.result == "delivered"
    (post,) = server.requests
    assert (post.method, post.path) == ("POST", "/fhir/Task")
    assert post.headers["content-type"] == "application/fhir+json"
    assert post.headers["if-none-exist"] == f"identifier={DELIVERY_SYSTEM}|rt-41-ab12"  # retries create nothing new
    task = Task.model_validate_json(post.body)
    assert (task.status, task.intent, task.priority) == ("requested", "order", "asap")
    assert task.focus.type == "ServiceRequest" and task.focus.identifier.value == ACCESSION
    assert task.focus.identifier.system == ACCESSION_SYSTEM
    assert task.for_fhir.identifier.value == PATIENT_ID
    assert [(i.system, i.value) for i in task.identifier] == [(DELIVERY_SYSTEM, "rt-41-ab12")]


def test_task_without_accession_focuses_on_the_imaging_study():
    with Recorder(lambda r: Reply(201)) as server:
        send(server, notice(accession_number=None), mode="task", patient_id_system=None)
    task = Task.model_validate_json(server.requests[0].body)
    assert task.focus.type == "ImagingStudy"
    assert (task.focus.identifier.system, task.focus.identifier.value) == ("urn:dicom:uid", f"urn:oid:{UID}")
    assert task.for_fhir is None and task.basedOn is None


@pytest.mark.parametrize("content", [Content.RESULT, Content.DRAFT])
def test_result_and_draft_post_one_preliminary_report_with_an_observation_per_finding(content):
    answer = json.dumps({"resourceType": "Bundle", "type": "transaction-response"})
    with Recorder(lambda r: Reply(200, answer)) as server:
        outcome = send(server, notice(content))

    assert outcome.result == "delivered"
    (post,) = server.requests
    assert (post.method, post.path) == ("POST", "/fhir")
    bundle = Bundle.model_validate_json(post.body)
    assert bundle.type == "transaction"
    resources = [entry.resource for entry in bundle.entry]
    observations = [Observation.model_validate(r.model_dump()) for r in resources[:-1]]
    report = DiagnosticReport.model_validate(resources[-1].model_dump())
    for entry in bundle.entry:
        value = entry.resource.identifier[0].value
        assert entry.request.method == "POST" and entry.request.ifNoneExist == f"identifier={DELIVERY_SYSTEM}|{value}"

    assert report.status == "preliminary"
    assert [(s.identifier.system, s.identifier.value) for s in report.imagingStudy] == [("urn:dicom:uid",
                                                                                          f"urn:oid:{UID}")]
    assert [r.reference for r in report.result] == [e.fullUrl for e in bundle.entry[:-1]]
    assert report.conclusion.startswith(DISCLAIMER)
    assert report.basedOn[0].identifier.value == ACCESSION
    draft_text = "Right apical pneumothorax." in report.conclusion and "Right pneumothorax." in report.conclusion
    assert draft_text == (content is Content.DRAFT)

    by_name = {o.code.coding[0].code: o for o in observations}
    assert set(by_name) == {"pneumothorax", "pleural effusion"}
    assert float(by_name["pneumothorax"].valueQuantity.value) == pytest.approx(0.83)
    assert by_name["pneumothorax"].interpretation[0].coding[0].code == "POS"
    assert by_name["pleural effusion"].interpretation[0].coding[0].code == "NEG"
    assert all(o.status == "preliminary" and o.derivedFrom[0].identifier.value == f"urn:oid:{UID}"
               for o in observations)


def test_a_retried_report_names_the_same_resources():
    with Recorder(lambda r: Reply(500)) as server:
        first = send(server, notice(Content.RESULT))
        second = send(server, notice(Content.RESULT))
    assert first.result == second.result == "retry"
    assert server.requests[0].body == server.requests[1].body  # conditional creates find the first copy


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_refusal_is_a_dead_letter_with_the_status_and_no_patient_data(status):
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [{"diagnostics": f"bad patient {PATIENT_ID}"}]})
    with Recorder(lambda r: Reply(status, body)) as server:
        outcome = send(server, notice(), mode="task")
    assert outcome.result == "refused"
    assert str(status) in outcome.detail and free_of_patient_data(outcome.detail)
    assert PATIENT_ID in outcome.peer_reply  # the operator sees the server's words (never logged)


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_conflicts_and_server_errors_are_retried(status):
    with Recorder(lambda r: Reply(status)) as server:
        outcome = send(server, notice(Content.RESULT))
    assert outcome.result == "retry" and str(status) in outcome.detail


def test_a_server_slower_than_the_timeout_is_retried():
    with Recorder(lambda r: Reply(200, delay=1.0)) as server:
        outcome = send(server, notice(), mode="task", timeout=0.2)
    assert outcome.result == "retry" and "Timeout" in outcome.detail
    assert len(server.requests) == 1


def test_a_server_that_is_down_is_retried():
    with Recorder(lambda r: Reply(200)) as server:
        url = server.url
    outcome = FhirSender(config(url)).send(notice())
    assert outcome.result == "retry" and "ConnectError" in outcome.detail


def test_mutual_tls(pki):
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    tls.load_cert_chain(pki / "server.pem", pki / "server.key")
    tls.verify_mode = ssl.CERT_REQUIRED
    with Recorder(lambda r: Reply(201), tls=tls) as server:
        with_cert = send(server, notice(), mode="task", ca_bundle=str(pki / "ca.pem"),
                         client_cert=str(pki / "client.pem"), client_key=str(pki / "client.key"))
        without = send(server, notice(), mode="task", ca_bundle=str(pki / "ca.pem"))
    assert with_cert.result == "delivered"
    assert without.result == "retry"
    assert len(server.requests) == 1


@pytest.mark.parametrize("changes", [{"mode": "patch"}, {"priority_map": {"STAT": "emergency"}},
                                     {"priority_map": {"HIGH": "stat"}}, {"base_url": "ftp://x"},
                                     {"client_cert": "/c.pem"}])
def test_bad_configurations_are_refused_at_start(changes):
    with pytest.raises(ValueError):
        config("http://127.0.0.1:1", **changes)


def test_without_an_accession_system_the_accession_matches_under_any_system():
    with Recorder(lambda r: searchset(order(1, "stat"))) as server:
        send(server, notice(), accession_system=None)
    assert parse_qs(server.requests[0].body.decode()) == {"identifier": [ACCESSION]}


def test_no_patient_data_or_accession_reaches_any_log_record(caplog):
    def answer(request: Request) -> Reply:
        return searchset(order(3)) if searching(request) else Reply(200, json.dumps(order(4, "stat")))

    caplog.set_level(logging.DEBUG)  # every logger, httpx's request log and httpcore's included
    with Recorder(answer) as server:
        outcomes = [send(server, notice(content)) for content in Content]
        outcomes.append(send(server, notice(), mode="task"))
    assert {o.result for o in outcomes} == {"delivered"}
    assert any("HTTP Request: PUT" in r.getMessage() for r in caplog.records)  # the log was really heard
    assert not [r.getMessage() for r in caplog.records if not free_of_patient_data(r.getMessage())]

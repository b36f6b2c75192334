"""Webhook deliveries against a real HTTP server started here: the signature verifies with the
documented algorithm (implemented again here with the ``hmac`` module, as a receiver would),
a tampered body or an old timestamp does not, and each answer becomes the right outcome."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import time

import pytest

from common import DISCLAIMER, Priority
from common.delivery import Content
from tests.integration.http_recorder import Recorder, Reply
from tests.integration.notice_factory import ACCESSION, PATIENT_DATA, notice
from worker.deliveries.webhook import WebhookConfig, WebhookSender

SECRET = "whsec-test-2f6a"
TOLERANCE = 300  # seconds: the replay window docs/integration.md recommends


def verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """The receiver's check, written from docs/integration.md (not from our code)."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(now - timestamp) <= TOLERANCE


def send(server: Recorder, item, **changes):
    config = dataclasses.replace(WebhookConfig(url=f"{server.url}/hooks/radtriage", secret=SECRET, timeout=0.5,
                                               headers={"X-Api-Key": "gateway-key"}), **changes)
    sender = WebhookSender(config)
    try:
        return sender.send(item)
    finally:
        sender.close()


def test_a_signed_json_post_that_the_receiver_can_verify_and_deduplicate():
    with Recorder(lambda r: Reply(204)) as server:
        outcome = send(server, notice(Content.DRAFT), priority_map={"STAT": "S", "URGENT": "A", "ROUTINE": "R"})

    assert outcome.result == "delivered"
    (post,) = server.requests
    assert (post.method, post.path) == ("POST", "/hooks/radtriage")
    assert post.headers["content-type"] == "application/json"
    assert post.headers["x-api-key"] == "gateway-key"
    assert post.headers["x-radtriage-delivery"] == "rt-41-ab12"
    assert verify(SECRET, post.headers["x-radtriage-signature"], post.body, time.time())

    body = json.loads(post.body)
    assert body["control_id"] == "rt-41-ab12" and body["content"] == "draft"
    assert body["study"]["study_instance_uid"] == "1.2.826.0.1.3680043.8.498.1"
    assert body["study"]["accession_number"] == ACCESSION
    assert body["priority"] == {"value": "STAT", "code": "S", "ordered": "ROUTINE", "previous": "ROUTINE",
                                "escalated_from": None}
    assert [(f["name"], f["score"], f["positive"]) for f in body["findings"]] == [
        ("pneumothorax", 0.83, True), ("pleural effusion", 0.12, False)]
    assert body["draft"]["unverified"] is True and body["draft"]["disclaimer"] == DISCLAIMER
    assert body["draft"]["impression"] == "Right pneumothorax."
    assert not any(value in post.body.decode() for value in ("DOE", "MRN-778899", "19700101"))  # no demographics


def test_a_tampered_body_a_wrong_secret_or_an_old_signature_fails_verification():
    with Recorder(lambda r: Reply(200)) as server:
        send(server, notice(Content.RESULT))
    (post,) = server.requests
    signature, body = post.headers["x-radtriage-signature"], post.body
    assert verify(SECRET, signature, body, time.time())
    tampered = body.replace(b'"STAT"', b'"ROUTINE"', 1)
    assert tampered != body and not verify(SECRET, signature, tampered, time.time())
    assert not verify("another secret", signature, body, time.time())
    assert not verify(SECRET, signature, body, time.time() + TOLERANCE + 60)  # a replay, later


def test_each_attempt_is_signed_afresh_with_the_same_delivery_id_and_content():
    clock = iter([1_700_000_000, 1_700_000_090])
    with Recorder(lambda r: Reply(503 if len(server.requests) == 1 else 200)) as server:
        config = WebhookConfig(url=server.url, secret=SECRET, timeout=0.5)
        sender = WebhookSender(config, clock=lambda: next(clock))
        outcomes = [sender.send(notice(Content.ESCALATION, escalated_from=Priority.URGENT)) for _ in range(2)]
        sender.close()
    assert [o.result for o in outcomes] == ["retry", "delivered"]
    first, second = server.requests
    assert first.body == second.body
    assert first.headers["x-radtriage-delivery"] == second.headers["x-radtriage-delivery"]
    assert first.headers["x-radtriage-signature"].startswith("t=1700000000,")
    assert second.headers["x-radtriage-signature"].startswith("t=1700000090,")
    assert verify(SECRET, second.headers["x-radtriage-signature"], second.body, 1_700_000_100)


@pytest.mark.parametrize(("status", "result"), [(200, "delivered"), (202, "delivered"), (409, "retry"),
                                                (429, "retry"), (500, "retry"), (400, "refused"),
                                                (401, "refused"), (404, "refused"), (422, "refused")])
def test_each_answer_becomes_an_outcome(status, result):
    with Recorder(lambda r: Reply(status, f"patient {PATIENT_DATA[0]}")) as server:
        outcome = send(server, notice())
    assert outcome.result == result and str(status) in outcome.detail
    assert not any(value in outcome.detail for value in PATIENT_DATA)


def test_a_receiver_slower_than_the_timeout_is_retried():
    with Recorder(lambda r: Reply(200, delay=1.0)) as server:
        outcome = send(server, notice(), timeout=0.2)
    assert outcome.result == "retry" and "Timeout" in outcome.detail


@pytest.mark.parametrize("changes", [{"secret": ""}, {"url": "file:///tmp/x"},
                                     {"headers": {"X-Radtriage-Delivery": "x"}}, {"priority_map": {"HIGH": "H"}}])
def test_bad_configurations_are_refused_at_start(changes):
    with pytest.raises(ValueError):
        dataclasses.replace(WebhookConfig(url="https://example.org/hook", secret=SECRET), **changes)


def test_no_patient_data_or_accession_reaches_any_log_record(caplog):
    caplog.set_level(logging.DEBUG)  # every logger, httpx's request log and httpcore's included
    with Recorder(lambda r: Reply(200)) as server:
        outcomes = [send(server, notice(content)) for content in Content]
    assert {o.result for o in outcomes} == {"delivered"}
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)
    assert not [r.getMessage() for r in caplog.records if any(v in r.getMessage() for v in PATIENT_DATA)]

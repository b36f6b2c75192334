"""A triaged study reaches a FHIR server and a webhook through the real outbox and dispatcher:
the rows the triage transaction wrote are sent by each destination's dispatcher to a recording
HTTP server, retried after a 500 and a timeout with the same control id, and marked sent; the
FHIR resources validate and carry the header read from the stored file. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.task import Task
from sqlalchemy import select

from common import Backoff, Priority
from common.delivery import Content
from db import deliveries
from db.deliveries import Route
from db.models import Delivery, utcnow
from tests.api_support import add_study
from tests.integration.http_recorder import Recorder, Reply, Request
from worker.deliveries.dispatcher import DispatchConfig, Dispatcher
from worker.deliveries.fhir import DELIVERY_SYSTEM, FhirConfig, FhirSender
from worker.deliveries.webhook import WebhookConfig, WebhookSender

NO_WAIT = Backoff(first=0.001, cap=0.001)


def dispatch(sessions, name: str, sender, data_dir) -> Dispatcher:
    return Dispatcher(sessions=sessions, config=DispatchConfig(name=name, backoff=NO_WAIT, data_dir=data_dir),
                      sender=sender)


def statuses(sessions, destination: str) -> list[tuple[str, str, int]]:
    with sessions() as session:
        rows = session.scalars(select(Delivery).where(Delivery.destination == destination).order_by(Delivery.seq))
        return [(r.content, r.status, r.attempts) for r in rows]


def test_a_triaged_study_reaches_fhir_and_a_webhook_once_each_after_failures(sessions, tmp_path):
    with sessions() as session:
        deliveries.sync_destinations(session, [Route("ris", "fhir", frozenset({Content.PRIORITY, Content.RESULT})),
                                               Route("glue", "webhook", frozenset({Content.PRIORITY}))])
    received = utcnow() - dt.timedelta(minutes=2)
    uid = add_study(sessions, 1, Priority.ROUTINE, received=received, ai=Priority.STAT, urgency=88.0,
                    data_dir=tmp_path, findings={"pneumothorax": 0.9})

    fhir_answers = iter([Reply(500), Reply(201, delay=1.0), Reply(201), Reply(200)])  # task, task, task, bundle
    with Recorder(lambda r: next(fhir_answers)) as fhir, \
            Recorder(lambda r: Reply(503) if len(glue.requests) == 1 else Reply(204)) as glue:
        ris = dispatch(sessions, "ris", FhirSender(FhirConfig(base_url=f"{fhir.url}/fhir", mode="task",
                                                              timeout=0.3)), tmp_path)
        hook = dispatch(sessions, "glue", WebhookSender(WebhookConfig(url=glue.url, secret="k", timeout=0.3)),
                        tmp_path)
        try:
            rounds = [(ris.run_once(), hook.run_once()) for _ in range(4)]
        finally:
            ris.close()
            hook.close()

    assert [sum(r) for r in zip(*rounds, strict=True)] == [2, 1]  # ris: priority and result; glue: priority
    assert statuses(sessions, "ris") == [("priority", "sent", 3), ("result", "sent", 1)]
    assert statuses(sessions, "glue") == [("priority", "sent", 2)]

    tasks = [r for r in fhir.requests if r.path == "/fhir/Task"]
    assert len(tasks) == 3 and len({r.headers["if-none-exist"] for r in tasks}) == 1  # one control id throughout
    task = Task.model_validate_json(tasks[-1].body)
    assert task.priority == "stat" and task.identifier[0].system == DELIVERY_SYSTEM
    assert task.focus.identifier.value == "ACC00001"  # from the stored file's header
    (report,) = [r for r in fhir.requests if r.path == "/fhir"]
    bundle = Bundle.model_validate_json(report.body)
    (observation, diagnostic_report) = (e.resource for e in bundle.entry)
    assert observation.code.coding[0].code == "pneumothorax"
    assert diagnostic_report.imagingStudy[0].identifier.value == f"urn:oid:{uid}"

    first, second = glue.requests
    assert first.headers["x-radtriage-delivery"] == second.headers["x-radtriage-delivery"]
    assert json.loads(second.body)["priority"]["value"] == "STAT"
    assert [(r.method, r.path) for r in (first, second)] == [("POST", "/"), ("POST", "/")]


def test_a_refusal_is_a_dead_letter_and_other_destinations_carry_on(sessions, tmp_path):
    with sessions() as session:
        deliveries.sync_destinations(session, [Route("ris", "fhir", frozenset({Content.PRIORITY})),
                                               Route("glue", "webhook", frozenset({Content.PRIORITY}))])
    add_study(sessions, 2, Priority.ROUTINE, received=utcnow(), ai=Priority.URGENT, data_dir=tmp_path)

    def answer(request: Request) -> Reply:
        return Reply(422 if request.path.startswith("/fhir") else 200)

    with Recorder(answer) as server:
        ris = dispatch(sessions, "ris", FhirSender(FhirConfig(base_url=f"{server.url}/fhir", mode="task")), tmp_path)
        hook = dispatch(sessions, "glue", WebhookSender(WebhookConfig(url=server.url, secret="k")), tmp_path)
        assert (ris.run_once(), hook.run_once()) == (0, 1)
        ris.close()
        hook.close()
    with sessions() as session:
        (dead,) = session.scalars(select(Delivery).where(Delivery.destination == "ris"))
    assert (dead.status, dead.last_error) == ("dead", "POST Task: HTTP 422")
    assert statuses(sessions, "glue") == [("priority", "sent", 1)]

"""The operator's deliveries view: ``GET /api/deliveries`` shows each destination's state, backlog,
oldest waiting delivery, last error and the dead letters, to admins only; an admin retries or
drops a dead letter, and each action is in the audit trail. On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from common import Priority
from common.delivery import Content, DeliveryStatus
from db import deliveries
from db.audit import AuditAction, entries_since
from db.deliveries import Route
from db.models import Delivery, Study, utcnow
from tests.api_support import add_study, client, user
from tests.integration.delivery_rows import delivery


def test_admins_see_each_destinations_state_backlog_last_error_and_dead_letters(sessions):
    now = utcnow()
    ago = lambda seconds: now - dt.timedelta(seconds=seconds)
    uid = add_study(sessions, 1, Priority.ROUTINE, received=ago(900), ai=Priority.STAT, urgency=90.0,
                    accession="ACC-77")
    with sessions() as session:
        deliveries.sync_destinations(session, [
            Route("ris", "hl7v2", frozenset({Content.PRIORITY, Content.RESULT})),
            Route("hook", "webhook", frozenset({Content.PRIORITY})), Route("fhir", "fhir", frozenset({Content.RESULT})),
            Route("quiet", "fhir", frozenset({Content.DRAFT}))])

    def pending(destination: str, seconds: int, content: Content = Content.PRIORITY) -> int:
        return delivery(sessions, uid, destination, DeliveryStatus.PENDING, created=ago(seconds), content=content)

    rows = {name: pending(*where) for name, where in {
        "acked": ("ris", 700), "failing": ("ris", 600), "waiting": ("ris", 60), "dead": ("ris", 500, Content.RESULT),
        "recovered": ("hook", 300), "untried": ("fhir", 30), "stale": ("gone", 100)}.items()}
    # What the dispatcher writes (db.deliveries), a sent row keeping its peer's answer as detail.
    with sessions() as session:
        later = now + dt.timedelta(minutes=5)
        deliveries.mark_sent(session, delivery_id=rows["acked"], detail="ACK AA", now=ago(690))
        deliveries.mark_retry(session, delivery_id=rows["failing"], detail="OMI^O23: ACK AE", retry_at=later,
                              now=ago(5))
        deliveries.mark_dead(session, delivery_id=rows["dead"], reason="ORU^R01: ACK AR", now=ago(400))
        deliveries.mark_retry(session, delivery_id=rows["recovered"], detail="POST webhook: HTTP 503", retry_at=later,
                              now=ago(298))
        deliveries.mark_sent(session, delivery_id=rows["recovered"], detail="POST webhook: HTTP 200", now=ago(290))
        deliveries.mark_dropped(session, delivery_id=rows["stale"], reason="stale: STAT already sent", now=ago(90))
    admin, reader = user(sessions, "ada", "admin"), user(sessions, "rex")
    api = client(sessions)

    assert api.get("/api/deliveries").status_code == 401
    assert api.get("/api/deliveries", headers=reader).status_code == 403
    answer = api.get("/api/deliveries", headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()

    states = {d["destination"]: d for d in body["destinations"]}
    assert list(states) == ["fhir", "gone", "hook", "quiet", "ris"]
    ris = states["ris"]
    assert (ris["kind"], ris["receives"], ris["active"]) == ("hl7v2", ["priority", "result"], True)
    assert (ris["state"], ris["backlog"], ris["sent"], ris["dead"], ris["dropped"]) == ("failing", 2, 1, 1, 0)
    assert dt.datetime.fromisoformat(ris["oldest_pending_at"]) == ago(600)
    assert 600 <= ris["oldest_pending_seconds"] < 660
    assert ris["last_error"] == "OMI^O23: ACK AE"  # the newest failure, not the older dead letter's
    assert dt.datetime.fromisoformat(ris["last_error_at"]) == ago(5)
    assert dt.datetime.fromisoformat(ris["last_sent_at"]) == ago(690)
    hook = states["hook"]
    assert (hook["state"], hook["backlog"], hook["sent"], hook["last_error"]) == ("ok", 0, 1, None)  # recovered
    assert (states["fhir"]["state"], states["fhir"]["backlog"], states["fhir"]["oldest_pending_seconds"] >= 30) == (
        "idle", 1, True)
    assert {k: states["quiet"][k] for k in ("kind", "state", "backlog", "oldest_pending_at", "sent")} == {
        "kind": "fhir", "state": "idle", "backlog": 0, "oldest_pending_at": None, "sent": 0}
    gone = states["gone"]  # no longer configured: its rows stay visible
    assert (gone["kind"], gone["active"], gone["dropped"], gone["last_error"]) == (None, False, 1, None)

    (letter,) = body["dead_letters"]
    assert letter["id"] == rows["dead"] and letter["destination"] == "ris" and letter["content"] == "result"
    assert (letter["accession_number"], letter["attempts"], letter["last_error"]) == ("ACC-77", 1, "ORU^R01: ACK AR")
    assert dt.datetime.fromisoformat(letter["dead_since"]) == ago(400)


def test_an_admin_retries_or_drops_a_dead_letter_and_both_are_audited(sessions):
    now = utcnow()
    uid = add_study(sessions, 2, Priority.ROUTINE, received=now, ai=Priority.URGENT)
    first = delivery(sessions, uid, "ris", DeliveryStatus.DEAD, created=now, attempts=8, attempted=now,
                     error="POST Task: HTTP 422", closed=now)
    second = delivery(sessions, uid, "ris", DeliveryStatus.DEAD, created=now, attempts=8, closed=now)
    sent = delivery(sessions, uid, "ris", DeliveryStatus.SENT, created=now, sent=now)
    admin, reader = user(sessions, "ada", "admin"), user(sessions, "rex")
    api = client(sessions)

    assert api.post(f"/api/deliveries/{first}/retry", headers=reader).status_code == 403
    retried = api.post(f"/api/deliveries/{first}/retry", headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json() == {"id": first, "destination": "ris", "status": "pending", "attempts": 0}
    dropped = api.post(f"/api/deliveries/{second}/drop", headers=admin)
    assert dropped.json()["status"] == "dropped"

    with sessions() as session:
        rows = {r.id: r for r in session.scalars(select(Delivery))}
        study_id = session.scalar(select(Study.id).where(Study.study_instance_uid == uid))
        audit = entries_since(session, since=now - dt.timedelta(minutes=1))
    assert (rows[first].status, rows[first].attempts, rows[first].closed_at) == ("pending", 0, None)
    assert rows[first].next_attempt_at is not None
    assert (rows[second].status, rows[second].closed_at is not None) == ("dropped", True)
    assert [(a.user, a.action, a.study_id, a.detail) for a in audit] == [
        ("ada", AuditAction.DELIVERY_RETRY, study_id, f"delivery {first} to ris"),
        ("ada", AuditAction.DELIVERY_DROP, study_id, f"delivery {second} to ris")]

    # Only a dead letter can be acted on; nothing is audited for a refused action.
    for target, verb in ((first, "drop"), (second, "retry"), (sent, "retry")):
        refused = api.post(f"/api/deliveries/{target}/{verb}", headers=admin)
        assert refused.status_code == 409 and "not a dead letter" in refused.json()["detail"]
    assert api.post("/api/deliveries/999999/retry", headers=admin).status_code == 404
    assert api.get("/api/deliveries", headers=admin).json()["dead_letters"] == []
    with sessions() as session:
        assert len(entries_since(session, since=now - dt.timedelta(minutes=1))) == 2


def test_without_sign_in_the_open_api_shows_no_accession(sqlite_sessions):
    now = utcnow()
    uid = add_study(sqlite_sessions, 3, Priority.STAT, received=now, accession="ACC-99")
    delivery(sqlite_sessions, uid, "ris", DeliveryStatus.DEAD, created=now, closed=now)
    body = client(sqlite_sessions).get("/api/deliveries").json()  # nobody configured: open, on loopback
    assert [(d["study_id"] > 0, d["accession_number"]) for d in body["dead_letters"]] == [(True, None)]


def test_the_response_models_are_published(sqlite_sessions):
    schema = client(sqlite_sessions).get("/openapi.json").json()
    assert {"Deliveries", "DestinationState", "DeadLetter", "DeliveryChange"} <= set(schema["components"]["schemas"])
    for verb in ("retry", "drop"):
        operation = schema["paths"][f"/api/deliveries/{{delivery_id}}/{verb}"]["post"]
        assert {"200", "404", "409"} <= set(operation["responses"])

"""The worklist API: reading order, waiting-time escalation, its published JSON, health and metrics."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from common import Priority
from db.assembly import complete_quiet_studies
from db.drafts import DraftRecord, claim_batch, record_draft
from db.ingest import NewInstance, record_instance
from db.models import utcnow
from db.triage import claim, record_result
from db.worklist import Escalation
from radtriage import health, metrics
from radtriage.api import create_api

# What the README documents for each item of GET /api/worklist, and for its draft.
ITEM_FIELDS = {"study_instance_uid", "accession_number", "priority", "escalated", "ordered_priority", "urgency_score",
               "status", "reasons", "revision", "instances", "received_at", "completed_at", "triaged_at",
               "draft_status", "draft"}
DRAFT_FIELDS = {"disclaimer", "findings", "impression", "model_id", "prompt_version", "revision", "sr_status"}


def add_study(sessions, n: int, ordered: Priority, *, received: dt.datetime, ai: Priority | None = None,
              urgency: float | None = None, draft: bool = False) -> str:
    uid = f"1.2.3.{n}"
    new = NewInstance(study_instance_uid=uid, series_instance_uid=f"{uid}.1", sop_instance_uid=f"{uid}.1.1",
                      sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                      ordered_priority=ordered, path=f"objects/{n}.dcm", content_hash=f"blake3:{n:064d}", size_bytes=1,
                      accession_number=f"A{n}")
    with sessions() as session:
        study_id = record_instance(session, new=new, now=received).study_id
        complete_quiet_studies(session, stable_seconds=0, now=received + dt.timedelta(seconds=1))
        if ai is not None:
            claim(session, study_id=study_id, revision=1, worker="test:1")
            record_result(session, study_id=study_id, revision=1, priority=ai, urgency_score=urgency,
                          reasons=["test"], scores=[], draft=draft)
    return uid


def client(sessions, escalation=Escalation(), database_ok=True):
    def health_report():
        return health.report({"database": lambda: {"status": "ok" if database_ok else "error"}})

    return TestClient(create_api(sessions=sessions, health=health_report, metrics=metrics.render,
                                 escalation=escalation))


def test_reading_order_priority_then_urgency_then_oldest(sessions):
    now = utcnow()
    old_routine = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(minutes=5))
    new_routine = add_study(sessions, 2, Priority.ROUTINE, received=now - dt.timedelta(minutes=1))
    ai_stat = add_study(sessions, 3, Priority.ROUTINE, received=now, ai=Priority.STAT, urgency=90.0)
    ordered_stat = add_study(sessions, 4, Priority.STAT, received=now, ai=Priority.ROUTINE, urgency=10.0)
    urgent_hi = add_study(sessions, 5, Priority.URGENT, received=now, ai=Priority.URGENT, urgency=70.0)
    urgent_lo = add_study(sessions, 6, Priority.URGENT, received=now - dt.timedelta(minutes=9),
                          ai=Priority.URGENT, urgency=40.0)
    items = client(sessions).get("/api/worklist").json()["items"]
    assert [i["study_instance_uid"] for i in items] == [
        ai_stat, ordered_stat, urgent_hi, urgent_lo, old_routine, new_routine
    ]
    by_uid = {i["study_instance_uid"]: i for i in items}
    # The AI said ROUTINE for a STAT order: the order stands.
    assert by_uid[ordered_stat]["priority"] == "STAT"
    assert by_uid[ai_stat]["ordered_priority"] == "ROUTINE" and by_uid[ai_stat]["priority"] == "STAT"


def test_long_wait_escalates_one_step_per_wait(sessions):
    now = utcnow()
    fresh = add_study(sessions, 1, Priority.ROUTINE, received=now)
    waited = add_study(sessions, 2, Priority.ROUTINE, received=now - dt.timedelta(minutes=130))
    waited_long = add_study(sessions, 3, Priority.ROUTINE, received=now - dt.timedelta(minutes=190))
    urgent_waited = add_study(sessions, 4, Priority.URGENT, received=now - dt.timedelta(minutes=61))
    escalation = Escalation(routine_after=dt.timedelta(minutes=120), urgent_after=dt.timedelta(minutes=60))
    by_uid = {i["study_instance_uid"]: i for i in client(sessions, escalation).get("/api/worklist").json()["items"]}
    assert by_uid[fresh]["priority"] == "ROUTINE" and not by_uid[fresh]["escalated"]
    assert by_uid[waited]["priority"] == "URGENT" and by_uid[waited]["escalated"]
    assert by_uid[waited_long]["priority"] == "STAT"
    assert by_uid[urgent_waited]["priority"] == "STAT"
    assert any("long wait" in r for r in by_uid[waited]["reasons"])
    off = Escalation(routine_after=None, urgent_after=None)
    assert all(not i["escalated"] for i in client(sessions, off).get("/api/worklist").json()["items"])


def test_page_escapes_what_it_shows(sessions):
    uid = add_study(sessions, 1, Priority.ROUTINE, received=utcnow())
    with sessions() as session:
        from sqlalchemy import update

        from db.models import Study

        session.execute(update(Study).values(accession_number="<script>alert"))  # fits (0008,0050)'s 16
        session.commit()
    page = client(sessions).get("/").text
    assert "<script>" not in page and "&lt;script&gt;alert" in page
    assert "not a diagnosis" in page
    assert uid not in page  # UIDs are not shown on the page


def test_health_is_503_only_without_database(sessions):
    assert client(sessions).get("/healthz").status_code == 200
    response = client(sessions, database_ok=False).get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "degraded"


def test_metrics_endpoint_serves_prometheus_text(sessions):
    response = client(sessions).get("/metrics")
    assert response.status_code == 200
    assert "radtriage_dicom_store_requests" in response.text


def test_worklist_shows_only_the_window(sessions):
    now = utcnow()
    recent = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(hours=2))
    add_study(sessions, 2, Priority.STAT, received=now - dt.timedelta(hours=80))
    window = Escalation(window=dt.timedelta(hours=72))
    assert [i["study_instance_uid"] for i in client(sessions, window).get("/api/worklist").json()["items"]] == [recent]


def test_openapi_publishes_the_worklist_item_and_its_priorities(sessions):
    schema = client(sessions).app.openapi()
    models = schema["components"]["schemas"]
    ok = schema["paths"]["/api/worklist"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Worklist"}
    assert models["Worklist"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/WorklistItem"}
    item = models["WorklistItem"]
    assert set(item["properties"]) == set(item["required"]) == ITEM_FIELDS
    assert item["properties"]["priority"]["$ref"] == item["properties"]["ordered_priority"]["$ref"] == \
        "#/components/schemas/Priority"
    assert models["Priority"]["enum"] == ["ROUTINE", "URGENT", "STAT"]
    assert models["StudyStatus"]["enum"] == ["receiving", "queued", "triaging", "triaged", "failed"]
    assert set(models["Draft"]["properties"]) == DRAFT_FIELDS
    assert item["properties"]["received_at"]["format"] == "date-time"
    health = schema["paths"]["/healthz"]["get"]["responses"]
    assert health["200"]["content"] == health["503"]["content"]
    assert health["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}


def test_worklist_returns_exactly_the_documented_fields(sessions):
    now = utcnow()
    plain = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(minutes=1))
    drafted = add_study(sessions, 2, Priority.URGENT, received=now, ai=Priority.STAT, urgency=80.0, draft=True)
    with sessions() as session:
        (job,) = claim_batch(session, limit=5, worker="gpu:1")
        record_draft(session, study_id=job.study_id, revision=job.revision, export=True, draft=DraftRecord(
            model_id="medgemma-tiny", model_version="v", prompt_version="p1", disclaimer="UNVERIFIED", findings="f",
            impression="i", raw_text="r", prompt_tokens=1, new_tokens=1, seconds=0.1, batch_size=1))
    response = client(sessions).get("/api/worklist")
    assert response.status_code == 200 and set(response.json()) == {"items"}
    by_uid = {i["study_instance_uid"]: i for i in response.json()["items"]}
    assert all(set(item) == ITEM_FIELDS for item in by_uid.values())
    assert by_uid[plain]["draft"] is None and by_uid[plain]["draft_status"] is None
    assert by_uid[plain]["triaged_at"] is None and by_uid[plain]["urgency_score"] is None
    item = by_uid[drafted]
    assert (item["priority"], item["ordered_priority"], item["status"]) == ("STAT", "URGENT", "triaged")
    assert (item["accession_number"], item["instances"], item["revision"], item["reasons"]) == ("A2", 1, 1, ["test"])
    assert item["draft_status"] == "drafted" and item["escalated"] is False and item["urgency_score"] == 80.0
    assert item["draft"] == {"disclaimer": "UNVERIFIED", "findings": "f", "impression": "i", "model_id": "medgemma-tiny",
                             "prompt_version": "p1", "revision": 1, "sr_status": "pending"}
    for key in ("received_at", "completed_at", "triaged_at"):  # ISO 8601 in UTC, as isoformat writes it
        assert item[key].endswith("+00:00") and dt.datetime.fromisoformat(item[key]).utcoffset() == dt.timedelta(0)

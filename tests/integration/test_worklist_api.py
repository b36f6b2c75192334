"""GET /api/worklist: reading order, stored escalation, filters, keyset pages, its published JSON,
bad parameters as 4xx; /healthz and /metrics."""

from __future__ import annotations

import datetime as dt

from common import Priority, Waits
from db.drafts import DraftRecord, claim_batch, record_draft
from db.escalation import escalate_due
from db.models import utcnow
from tests.api_support import add_study, client, user

# What the README documents for each item of GET /api/worklist, and for its draft preview.
ITEM_FIELDS = {"study_instance_uid", "accession_number", "priority", "escalated", "escalated_from", "ordered_priority",
               "ai_priority", "urgency_score", "status", "findings", "reasons", "revision", "instances", "received_at",
               "completed_at", "triaged_at", "draft_status", "draft_preview", "claimed_by", "claimed_at", "read_by",
               "read_at", "viewer_url"}


def uids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["study_instance_uid"] for i in response.json()["items"]]


def test_reading_order_priority_then_urgency_then_oldest(sessions):
    now = utcnow()
    old_routine = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(minutes=5))
    new_routine = add_study(sessions, 2, Priority.ROUTINE, received=now - dt.timedelta(minutes=1))
    ai_stat = add_study(sessions, 3, Priority.ROUTINE, received=now, ai=Priority.STAT, urgency=90.0)
    ordered_stat = add_study(sessions, 4, Priority.STAT, received=now, ai=Priority.ROUTINE, urgency=10.0)
    urgent_hi = add_study(sessions, 5, Priority.URGENT, received=now, ai=Priority.URGENT, urgency=70.0)
    urgent_lo = add_study(sessions, 6, Priority.URGENT, received=now - dt.timedelta(minutes=9),
                          ai=Priority.URGENT, urgency=40.0)
    response = client(sessions).get("/api/worklist")
    assert uids(response) == [ai_stat, ordered_stat, urgent_hi, urgent_lo, old_routine, new_routine]
    by_uid = {i["study_instance_uid"]: i for i in response.json()["items"]}
    # The AI said ROUTINE for a STAT order: the order stands.
    assert by_uid[ordered_stat]["priority"] == "STAT" and by_uid[ordered_stat]["ai_priority"] == "STAT"
    assert by_uid[ai_stat]["ordered_priority"] == "ROUTINE" and by_uid[ai_stat]["ai_priority"] == "STAT"
    assert by_uid[old_routine]["ai_priority"] is None  # not triaged yet


def test_escalated_study_shows_where_it_came_from_apart_from_clinical_stat(sessions):
    now = utcnow()
    fresh = add_study(sessions, 1, Priority.ROUTINE, received=now)
    waited = add_study(sessions, 2, Priority.ROUTINE, received=now - dt.timedelta(minutes=130))
    waited_long = add_study(sessions, 3, Priority.ROUTINE, received=now - dt.timedelta(minutes=190))
    clinical_stat = add_study(sessions, 4, Priority.STAT, received=now)
    with sessions() as session:
        escalate_due(session, waits=Waits(dt.timedelta(minutes=120), dt.timedelta(minutes=60)), now=now)
    by_uid = {i["study_instance_uid"]: i for i in client(sessions).get("/api/worklist").json()["items"]}
    assert (by_uid[fresh]["priority"], by_uid[fresh]["escalated"], by_uid[fresh]["escalated_from"]) == \
        ("ROUTINE", False, None)
    assert (by_uid[waited]["priority"], by_uid[waited]["escalated_from"]) == ("URGENT", "ROUTINE")
    assert (by_uid[waited_long]["priority"], by_uid[waited_long]["escalated_from"]) == ("STAT", "ROUTINE")
    assert (by_uid[clinical_stat]["priority"], by_uid[clinical_stat]["escalated"]) == ("STAT", False)


def test_filters_by_status_priority_claim_and_accession_prefix(sessions):
    now = utcnow()
    alice = user(sessions, "alice")
    bob = user(sessions, "bob")
    stat = add_study(sessions, 1, Priority.STAT, received=now, ai=Priority.STAT, urgency=50.0, accession="CT100")
    urgent = add_study(sessions, 2, Priority.URGENT, received=now, accession="CT200")
    routine = add_study(sessions, 3, Priority.ROUTINE, received=now, ai=Priority.ROUTINE, urgency=5.0,
                        accession="MR100")
    api = client(sessions)
    assert api.post(f"/api/studies/{urgent}/claim", headers=alice).status_code == 200
    assert api.post(f"/api/studies/{routine}/claim", headers=bob).status_code == 200
    get = lambda query, who=alice: uids(api.get(f"/api/worklist?{query}", headers=who))
    assert get("priority=STAT") == [stat]
    assert get("priority=STAT&priority=ROUTINE") == [stat, routine]
    assert get("status=triaged") == [stat, routine]
    assert get("status=queued") == [urgent]
    assert get("claimed=me") == [urgent] and get("claimed=me", bob) == [routine]
    assert get("claimed=unclaimed") == [stat]
    assert get("q=CT") == [stat, urgent] and get("q=CT2") == [urgent] and get("q=X") == []
    item = api.get("/api/worklist?claimed=me", headers=alice).json()["items"][0]
    assert item["claimed_by"] == "alice" and item["claimed_at"].endswith("+00:00")


def test_cursor_pages_return_each_study_once_in_reading_order(sessions):
    now = utcnow()
    made = [add_study(sessions, n, [Priority.ROUTINE, Priority.URGENT, Priority.STAT][n % 3],
                      received=now - dt.timedelta(seconds=n % 4), ai=Priority.ROUTINE if n % 2 else None,
                      urgency=float(n % 5) if n % 2 else None) for n in range(1, 24)]
    api = client(sessions)
    whole = uids(api.get("/api/worklist?limit=200"))
    assert sorted(whole) == sorted(made)
    seen, cursor = [], None
    for _ in range(10):
        page = api.get("/api/worklist", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["items"]) <= 5
        seen += [i["study_instance_uid"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole


def test_bad_parameters_are_4xx_with_a_message(sessions):
    api = client(sessions)
    for query, status in [("cursor=not-a-cursor", 400), ("limit=0", 422), ("limit=201", 422), ("limit=x", 422),
                          ("priority=HIGH", 422), ("status=lost", 422), ("claimed=them", 422), ("q=", 422)]:
        response = api.get(f"/api/worklist?{query}")
        assert response.status_code == status, (query, response.text)
        assert response.json()["detail"]
    assert "cursor" in api.get("/api/worklist?cursor=bm9wZQ").json()["detail"]


def test_default_page_is_50_and_items_link_to_the_viewer(sessions):
    now = utcnow()
    for n in range(1, 53):
        add_study(sessions, n, Priority.ROUTINE, received=now - dt.timedelta(seconds=n))
    api = client(sessions, viewer_url_template="https://pacs/viewer?StudyInstanceUIDs={study_instance_uid}&acc={accession_number}")
    page = api.get("/api/worklist").json()
    assert len(page["items"]) == 50 and page["next_cursor"]
    assert page["items"][0]["viewer_url"] == "https://pacs/viewer?StudyInstanceUIDs=1.2.3.52&acc=A52"
    assert client(sessions).get("/api/worklist?limit=1").json()["items"][0]["viewer_url"] is None


def test_health_is_503_only_without_database(sessions):
    assert client(sessions).get("/healthz").status_code == 200
    response = client(sessions, database_ok=False).get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "degraded"


def test_metrics_endpoint_serves_prometheus_text(sessions):
    response = client(sessions).get("/metrics")
    assert response.status_code == 200
    assert "radtriage_dicom_store_requests" in response.text


def test_an_unread_study_stays_listed_however_old(sessions):
    now = utcnow()
    recent = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(hours=2))
    forgotten = add_study(sessions, 2, Priority.STAT, received=now - dt.timedelta(days=10))
    assert uids(client(sessions).get("/api/worklist")) == [forgotten, recent]


def test_openapi_publishes_the_worklist_item_and_its_priorities(sessions):
    schema = client(sessions).app.openapi()
    models = schema["components"]["schemas"]
    ok = schema["paths"]["/api/worklist"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Worklist"}
    assert models["Worklist"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/WorklistItem"}
    item = models["WorklistItem"]
    assert set(item["properties"]) == set(item["required"]) == ITEM_FIELDS
    assert item["properties"]["ordered_priority"]["$ref"] == "#/components/schemas/Priority"
    assert models["Priority"]["enum"] == ["ROUTINE", "URGENT", "STAT"]
    assert models["StudyStatus"]["enum"] == ["receiving", "queued", "triaging", "triaged", "failed"]
    assert set(models["DraftPreview"]["properties"]) == {"disclaimer", "text"}
    assert item["properties"]["received_at"]["format"] == "date-time"
    for path in ("/api/studies/{uid}", "/api/studies/{uid}/claim", "/api/studies/{uid}/release",
                 "/api/studies/{uid}/read", "/api/studies/{uid}/preview.png", "/api/events", "/api/me"):
        assert path in schema["paths"]
    assert schema["paths"]["/api/studies/{uid}/claim"]["post"]["responses"]["409"]
    health = schema["paths"]["/healthz"]["get"]["responses"]
    assert health["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}


def test_worklist_returns_exactly_the_documented_fields(sessions):
    now = utcnow()
    plain = add_study(sessions, 1, Priority.ROUTINE, received=now - dt.timedelta(minutes=1))
    drafted = add_study(sessions, 2, Priority.URGENT, received=now, ai=Priority.STAT, urgency=80.0, draft=True,
                        findings={"pneumothorax": 0.91, "effusion": 0.2})
    with sessions() as session:
        (job,) = claim_batch(session, limit=5, worker="gpu:1")
        record_draft(session, study_id=job.study_id, revision=job.revision, export=True, draft=DraftRecord(
            model_id="medgemma-tiny", model_version="v", prompt_version="p1", disclaimer="UNVERIFIED", findings="f",
            impression="Large right pneumothorax. " * 20, raw_text="r", prompt_tokens=1, new_tokens=1, seconds=0.1,
            batch_size=1))
    response = client(sessions).get("/api/worklist")
    assert response.status_code == 200 and set(response.json()) == {"items", "next_cursor"}
    by_uid = {i["study_instance_uid"]: i for i in response.json()["items"]}
    assert all(set(item) == ITEM_FIELDS for item in by_uid.values())
    assert by_uid[plain]["draft_preview"] is None and by_uid[plain]["draft_status"] is None
    assert by_uid[plain]["triaged_at"] is None and by_uid[plain]["urgency_score"] is None
    item = by_uid[drafted]
    assert (item["priority"], item["ordered_priority"], item["status"]) == ("STAT", "URGENT", "triaged")
    assert (item["accession_number"], item["instances"], item["revision"], item["reasons"]) == ("A2", 1, 1, ["test"])
    assert item["findings"] == [{"name": "pneumothorax", "score": 0.91}, {"name": "effusion", "score": 0.2}]
    assert item["draft_status"] == "drafted" and item["urgency_score"] == 80.0
    assert item["draft_preview"]["disclaimer"] == "UNVERIFIED"
    assert item["draft_preview"]["text"].startswith("Large right pneumothorax.")
    assert len(item["draft_preview"]["text"]) <= 160 and item["draft_preview"]["text"].endswith("…")
    for key in ("received_at", "completed_at", "triaged_at"):  # ISO 8601 in UTC, as isoformat writes it
        assert item[key].endswith("+00:00") and dt.datetime.fromisoformat(item[key]).utcoffset() == dt.timedelta(0)

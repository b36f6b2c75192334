"""One study over the API: detail (header for signed-in users only, audited as a view), preview
image, and claim / release / read with their refusals and audit rows."""

from __future__ import annotations

import datetime as dt
import io

from PIL import Image

from common import Priority
from db.audit import entries_since
from db.models import utcnow
from tests.api_support import add_study, client, user


def audit(sessions) -> list[tuple[str, str, int | None]]:
    with sessions() as session:
        return [(row.user, row.action.value, row.study_id)
                for row in entries_since(session, since=utcnow() - dt.timedelta(hours=1))]


def test_claim_conflict_names_the_claimant_and_release_needs_the_claimant_or_an_admin(sessions):
    uid = add_study(sessions, 1, Priority.URGENT, received=utcnow())
    alice, bob, admin = user(sessions, "alice"), user(sessions, "bob"), user(sessions, "chief", "admin")
    api = client(sessions)
    claimed = api.post(f"/api/studies/{uid}/claim", headers=alice)
    assert claimed.status_code == 200 and claimed.json()["claimed_by"] == "alice" and claimed.json()["changed"]
    again = api.post(f"/api/studies/{uid}/claim", headers=alice)  # one's own claim: kept, no change
    assert again.status_code == 200 and not again.json()["changed"]
    conflict = api.post(f"/api/studies/{uid}/claim", headers=bob)
    assert conflict.status_code == 409 and conflict.json()["detail"] == "claimed by alice"
    assert api.post(f"/api/studies/{uid}/read", headers=bob).status_code == 409
    refused = api.post(f"/api/studies/{uid}/release", headers=bob)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    item = api.get("/api/worklist", headers=bob).json()["items"][0]
    assert item["claimed_by"] == "alice"  # everyone else sees whose it is
    released = api.post(f"/api/studies/{uid}/release", headers=admin)
    assert released.status_code == 200 and released.json()["claimed_by"] is None
    assert api.post(f"/api/studies/{uid}/claim", headers=bob).status_code == 200
    read = api.post(f"/api/studies/{uid}/read", headers=bob)
    assert read.status_code == 200 and read.json()["read_by"] == "bob" and read.json()["read_at"]
    assert api.get("/api/worklist", headers=bob).json()["items"] == []  # read: off the active worklist
    assert api.post(f"/api/studies/{uid}/read", headers=alice).status_code == 409
    # Each action that went through is on record, with who and the study; refusals are not.
    actions = [(u, a) for u, a, _ in audit(sessions)]
    assert actions == [("alice", "claim"), ("alice", "claim"), ("chief", "release"), ("bob", "claim"), ("bob", "read")]
    assert len({study_id for _, _, study_id in audit(sessions)}) == 1


def test_unknown_study_is_404_and_a_malformed_uid_422_for_every_study_route(sessions):
    alice = user(sessions, "alice")
    api = client(sessions)
    for method, path in [("GET", ""), ("GET", "/preview.png"), ("POST", "/claim"), ("POST", "/release"),
                         ("POST", "/read")]:
        missing = api.request(method, f"/api/studies/1.2.999{path}", headers=alice)
        assert missing.status_code == 404 and "no study" in missing.json()["detail"], path
        assert api.request(method, f"/api/studies/not-a-uid{path}", headers=alice).status_code == 422, path
    assert audit(sessions) == []


def test_detail_shows_the_header_to_signed_in_users_and_records_the_view(sessions, tmp_path):
    uid = add_study(sessions, 7, Priority.ROUTINE, received=utcnow(), ai=Priority.URGENT, urgency=61.0,
                    data_dir=tmp_path, findings={"effusion": 0.7, "nodule": 0.1})
    alice = user(sessions, "alice")
    api = client(sessions, data_dir=tmp_path)
    detail = api.get(f"/api/studies/{uid}", headers={**alice, "X-Forwarded-For": "ignored"})
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert body["header"]["patient_name"] == "DOE JANE7" and body["header"]["patient_id"] == "PID-7"
    assert body["study"]["priority"] == "URGENT" and body["study"]["ai_priority"] == "URGENT"
    assert [(f["name"], f["score"]) for f in body["findings"]] == [("effusion", 0.7), ("nodule", 0.1)]
    assert body["reasons"] == ["test"] and body["draft"] is None
    assert [i["sop_instance_uid"] for i in body["instances"]] == [f"{uid}.1.1"]
    assert [h["stage"] for h in body["history"]][:2] == ["complete", "triaging"]
    assert [(u, a) for u, a, _ in audit(sessions)] == [("alice", "view")]
    with sessions() as session:
        (row,) = entries_since(session, since=utcnow() - dt.timedelta(hours=1))
    assert row.address == "testclient" and row.study_id is not None


def test_without_sign_in_the_detail_carries_no_patient_header(sessions, tmp_path):
    uid = add_study(sessions, 3, Priority.ROUTINE, received=utcnow(), data_dir=tmp_path)
    body = client(sessions, data_dir=tmp_path).get(f"/api/studies/{uid}").json()  # nobody configured: anonymous
    assert body["header"] is None and "DOE" not in str(body)


def test_preview_is_a_small_png_of_the_stored_image_cached_by_content(sessions, tmp_path):
    uid = add_study(sessions, 4, Priority.ROUTINE, received=utcnow(), data_dir=tmp_path)
    alice = user(sessions, "alice")
    api = client(sessions, data_dir=tmp_path)
    response = api.get(f"/api/studies/{uid}/preview.png", headers=alice)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (96, 96) and image.mode == "L"  # never upscaled; grey levels
    (cached,) = (tmp_path / "previews").iterdir()
    (stored,) = (tmp_path / "objects").iterdir()
    assert cached.name == f"{stored.stem}.png" and cached.read_bytes() == response.content
    cached.write_bytes(b"served from the cache")  # a second request does not render again
    assert api.get(f"/api/studies/{uid}/preview.png", headers=alice).content == b"served from the cache"
    stored.unlink()
    cached.unlink()
    gone = api.get(f"/api/studies/{uid}/preview.png", headers=alice)
    assert gone.status_code == 404 and gone.json()["detail"]

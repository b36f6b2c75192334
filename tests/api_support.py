"""Helpers for the API tests: studies recorded through db/'s real ingest and triage functions,
users through db.users, and a TestClient on ``create_api``."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from common import Priority
from db.assembly import complete_quiet_studies
from db.ingest import NewInstance, record_instance
from db.triage import ScoreRecord, claim, record_result
from db.users import add_user
from radtriage import health, metrics
from radtriage.api import create_api
from tests.factories import radiograph


def add_study(sessions, n: int, ordered: Priority, *, received: dt.datetime, ai: Priority | None = None,
              urgency: float | None = None, draft: bool = False, accession: str | None = None,
              data_dir: Path | None = None, findings: dict[str, float] | None = None) -> str:
    """A completed study ``1.2.3.<n>``; with ``ai``, triaged; with ``data_dir``, its image is stored there."""
    uid = f"1.2.3.{n}"
    path, content_hash = f"objects/{n}.dcm", f"blake3:{n:064d}"
    if data_dir is not None:
        ds = radiograph(study_uid=uid, seed=n, size=96)
        ds.PatientName, ds.PatientID = f"DOE^JANE{n}", f"PID-{n}"
        target = data_dir / "objects" / f"{hashlib.sha256(uid.encode()).hexdigest()}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
        path = str(target.relative_to(data_dir))
    new = NewInstance(study_instance_uid=uid, series_instance_uid=f"{uid}.1", sop_instance_uid=f"{uid}.1.1",
                      sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                      ordered_priority=ordered, path=path, content_hash=content_hash, size_bytes=1,
                      accession_number=accession or f"A{n}")
    with sessions() as session:
        study_id = record_instance(session, new=new, now=received).study_id
        complete_quiet_studies(session, stable_seconds=0, now=received + dt.timedelta(seconds=1))
        if ai is not None:
            claim(session, study_id=study_id, revision=1, worker="test:1")
            scores = [ScoreRecord(model="test", instance_id=None, findings=findings)] if findings else []
            record_result(session, study_id=study_id, revision=1, priority=ai, urgency_score=urgency,
                          reasons=["test"], scores=scores, draft=draft)
    return uid


def user(sessions, name: str, role: str = "reader") -> dict[str, str]:
    """Add a user; the headers that sign in as them."""
    with sessions() as session:
        token = add_user(session, name=name, role=role)
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def client(sessions, *, database_ok: bool = True,
           data_dir: Path | None = None, viewer_url_template: str | None = None) -> TestClient:
    def health_report():
        return health.report({"database": lambda: {"status": "ok" if database_ok else "error"}})

    return TestClient(create_api(sessions=sessions, health=health_report, metrics=metrics.render,
                                 data_dir=data_dir, viewer_url_template=viewer_url_template))

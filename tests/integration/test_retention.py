"""Retention: images, embeddings, sent outbox rows, events and sent deliveries older than the
period go; the study keeps its worklist row, scores and audit trail; ``radtriage purge
--dry-run`` shows the same counts and removes nothing; what is recent or unfinished stays."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from common import Priority, StudyStatus
from common.delivery import Content, DeliveryStatus
from db.models import AuditEntry, Delivery, Event, Instance, OutboxMessage, Score, Study
from db.retention import Purged, purge
from db.session import make_engine, make_session_factory, migrate

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC)
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=2)
KEEP = dt.timedelta(days=30)


def _study(session, data_dir: Path, n: int, *, at: dt.datetime, status=StudyStatus.TRIAGED,
           shared_path: str | None = None) -> int:
    study = Study(study_instance_uid=f"1.2.826.0.9.{n}", accession_number=f"R{n:06d}", ordered_priority="ROUTINE",
                  status=status, reasons=[], revision=1, received_at=at, last_instance_at=at, state_changed_at=at,
                  instance_count=1, urgency_score=10.0)
    study.set_priority(Priority.ROUTINE)
    session.add(study)
    session.flush()
    path = shared_path or f"objects/{n:02d}/{n}.dcm"
    (data_dir / path).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / path).write_bytes(b"x" * 100)
    instance = Instance(study_id=study.id, series_instance_uid=f"1.2.9.{n}", sop_instance_uid=f"1.2.9.{n}.1",
                        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                        path=path, content_hash=f"blake3:{n}", size_bytes=100, received_at=at)
    session.add(instance)
    session.flush()
    session.add(Score(study_id=study.id, revision=1, model="cxr-foundation", instance_id=instance.id,
                      findings={"pneumothorax": 0.1}, embedding=b"stored", created_at=at))
    session.add(OutboxMessage(task="triage", study_id=study.id, revision=1, created_at=at, sent_at=at))
    session.add(OutboxMessage(task="draft", study_id=study.id, revision=1, created_at=at, sent_at=None))
    session.add(Event(study_id=study.id, stage="triaged", detail="revision 1", created_at=at))
    for seq, state in enumerate((DeliveryStatus.SENT, DeliveryStatus.PENDING), start=1):
        session.add(Delivery(destination="ris", study_id=study.id, revision=1, seq=seq, content=Content.PRIORITY.value,
                             status=state.value, payload={}, control_id=f"rt-{n:04d}-{seq}", next_attempt_at=at,
                             created_at=at, sent_at=at if state is DeliveryStatus.SENT else None))
    session.add(AuditEntry(at=at, user_name="reader", action="view", study_id=study.id, detail=""))
    session.commit()
    return study.id


def _snapshot(sessions) -> dict:
    with sessions() as session:
        return {
            "studies": session.execute(select(Study.id, Study.status, Study.priority, Study.urgency_score)
                                       .order_by(Study.id)).all(),
            "scores": session.scalar(select(func.count(Score.id))),
            "audit": session.scalar(select(func.count(AuditEntry.id))),
            "instances": session.scalar(select(func.count(Instance.id))),
        }


def test_purge_removes_old_data_and_keeps_the_worklist_and_audit_trail(sessions, tmp_path) -> None:
    data_dir = tmp_path / "data"
    with sessions() as session:
        old = _study(session, data_dir, 1, at=OLD)
        recent = _study(session, data_dir, 2, at=RECENT)
        unfinished = _study(session, data_dir, 3, at=OLD, status=StudyStatus.QUEUED)  # its images are still needed
        # Identical bytes stored once: an old row and a recent one name the same file.
        shared_old = _study(session, data_dir, 4, at=OLD, shared_path="objects/shared.dcm")
        _study(session, data_dir, 5, at=RECENT, shared_path="objects/shared.dcm")
    before = _snapshot(sessions)

    preview = purge(sessions, data_dir=data_dir, older_than=KEEP, dry_run=True)
    assert preview == Purged(images=2, image_bytes=200, embeddings=3, outbox=3, events=3, deliveries=3)
    assert (data_dir / "objects/01/1.dcm").exists() and _snapshot(sessions) == before

    assert purge(sessions, data_dir=data_dir, older_than=KEEP) == preview
    assert not (data_dir / "objects/01/1.dcm").exists()
    assert (data_dir / "objects/02/2.dcm").exists() and (data_dir / "objects/03/3.dcm").exists()
    assert (data_dir / "objects/shared.dcm").exists()  # a recent row still names it
    assert _snapshot(sessions) == before  # worklist rows, scores, instance rows and the audit trail stay

    with sessions() as session:
        purged = dict(session.execute(select(Instance.study_id, Instance.purged_at)).all())
        assert {study for study, at in purged.items() if at is not None} == {old, shared_old}
        embeddings = dict(session.execute(select(Score.study_id, Score.embedding)).all())
        assert embeddings[recent] == b"stored" and embeddings[old] is None and embeddings[unfinished] is None
        unsent = session.scalars(select(OutboxMessage.study_id).where(OutboxMessage.sent_at.is_(None))).all()
        assert len(unsent) == 5  # work still to do stays
        assert session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.sent_at.is_not(None))) == 2
        assert sorted(session.scalars(select(Event.study_id))) == sorted([recent, 5])
        kept = session.execute(select(Delivery.study_id, Delivery.status)).all()
        assert {(study, status) for study, status in kept if status == DeliveryStatus.SENT} == {(recent, "sent"), (5, "sent")}
        assert sum(1 for _study_id, status in kept if status == DeliveryStatus.PENDING) == 5

    assert purge(sessions, data_dir=data_dir, older_than=KEEP) == Purged()  # nothing left to do


def test_purge_dry_run_on_the_command_line_removes_nothing(tmp_path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    engine = make_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
    migrate(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        _study(session, data_dir, 1, at=OLD)
        _study(session, data_dir, 2, at=RECENT)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADTRIAGE_")}
    env.update(RADTRIAGE_DATA_DIR=str(data_dir), RADTRIAGE_RETENTION_DAYS="30")

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "radtriage", "purge", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    preview = run("--dry-run")
    assert "would purge what is older than 30 days" in preview
    assert "images: 1 (0.0 MB)" in preview and "events: 1" in preview and "sent deliveries: 1" in preview
    assert (data_dir / "objects/01/1.dcm").exists()
    assert "images: 1 " in run()
    assert not (data_dir / "objects/01/1.dcm").exists() and (data_dir / "objects/02/2.dcm").exists()
    assert "images: 0 " in run("--dry-run")
    engine.dispose()

"""Helpers for the worker tests: studies built with the real intake, the assembler's
completion and the triage claim, with times passed as ``now=`` instead of sleeping."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import func, select

from common import Priority
from db import outbox
from db.assembly import complete_quiet_studies
from db.ingest import NewInstance, Recorded, record_instance
from db.models import Event, OutboxMessage, Score, Study, utcnow
from db.reconcile import redrive_stuck
from db.session import make_engine, migrate
from db.triage import claim, record_result
from dicom.acceptance import read_file
from dicom.intake import identify, take_in
from radtriage.settings import Settings
from radtriage.wiring import worker_config
from tests.factories import DX
from worker.tasks import WorkerContext

RUNNING_TIMEOUT = 900.0
QUEUED_TIMEOUT = 600.0
WORKER_LOST = 30.0
STABLE = 5.0
BAD_J2K = "edge/966_bad_COM_marker.dcm"  # chest DX whose JPEG 2000 stream cannot be decoded


def seconds(n: float) -> dt.timedelta:
    return dt.timedelta(seconds=n)




def worker_context(tmp_path: Path, model_dir: Path | None = None, **overrides) -> WorkerContext:
    """A worker's context on a fresh SQLite data folder; no MedGemma, so no drafts are queued."""
    settings = Settings(
        data_dir=tmp_path / "data",
        cxr_foundation_dir=model_dir or tmp_path / "no-model",
        medgemma_model=str(tmp_path / "no-medgemma"),
        **overrides,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    engine.dispose()
    return WorkerContext(worker_config(settings))


def ingest(ctx: WorkerContext, ds: pydicom.Dataset, *, priority: Priority | None = None) -> Recorded:
    """Take ``ds`` in exactly as the listener does (durable file, committed row)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    new = identify(ds, str(ds.file_meta.TransferSyntaxUID))
    if priority is not None:
        new = _with_priority(new, priority)
    return take_in(buffer.getvalue(), new, data_dir=ctx.data_dir, sessions=ctx.sessions)


def ingest_file(ctx: WorkerContext, path: Path, *, priority: Priority | None = None) -> Recorded:
    part = read_file(path)
    raw, ds, syntax = part.parts, part.dataset, part.transfer_syntax
    new = identify(ds, syntax)
    if priority is not None:
        new = _with_priority(new, priority)
    return take_in(raw, new, data_dir=ctx.data_dir, sessions=ctx.sessions)


def _with_priority(new: NewInstance, priority: Priority) -> NewInstance:
    # As if the order had said so: the file's own request attributes are left untouched.
    return dataclasses.replace(new, ordered_priority=priority)


def complete_all(ctx: WorkerContext) -> list[int]:
    """The quiet timer runs out for every study received so far."""
    with ctx.sessions() as session:
        return complete_quiet_studies(session, stable_seconds=STABLE, now=utcnow() + seconds(STABLE + 1))


def study_of(sessions, study_id: int) -> Study:
    with sessions() as session:
        return session.get(Study, study_id)


def count(sessions, model, *where) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def stages(sessions, study_id: int, stage: str) -> list[str]:
    """The details of the study's events of ``stage``, oldest first."""
    with sessions() as session:
        return list(session.scalars(
            select(Event.detail).where(Event.study_id == study_id, Event.stage == stage).order_by(Event.id)
        ))


def snapshot(sessions, study_id: int) -> tuple:
    """Everything a task may write about a study: its row, its scores, its events, its outbox."""
    with sessions() as session:
        study = session.get(Study, study_id)
        row = (study.status, study.revision, study.priority, study.urgency_score, list(study.reasons or []),
               study.attempts, study.draft_status)
        scores = session.execute(select(Score.id, Score.revision).where(Score.study_id == study_id)).all()
        events = session.execute(select(Event.stage, Event.detail).where(Event.study_id == study_id)).all()
        messages = session.execute(select(OutboxMessage.id, OutboxMessage.task).where(
            OutboxMessage.study_id == study_id)).all()
    return row, sorted(scores), sorted(events), sorted(messages)


# ---------------------------------------------------------------- studies as the sweep and the draft queue find them


def new_instance(priority: Priority = Priority.ROUTINE) -> NewInstance:
    """What the listener records for one image of a new study (the sweep never reads the file)."""
    sop = generate_uid()
    return NewInstance(
        study_instance_uid=generate_uid(), series_instance_uid=generate_uid(), sop_instance_uid=sop,
        sop_class_uid=DX, transfer_syntax_uid=ExplicitVRLittleEndian, ordered_priority=priority,
        path=f"objects/{sop}.dcm", content_hash="blake3:" + hashlib.sha256(sop.encode()).hexdigest(), size_bytes=1,
        modality="DX", body_part="CHEST", view_position="PA",
    )


def queued_study(session, *, at: dt.datetime, priority: Priority = Priority.ROUTINE, sent: bool = True) -> int:
    """A study received at ``at``, completed by the quiet timer; ``sent``: the relay handed its
    message to the broker."""
    study_id = record_instance(session, new=new_instance(priority=priority), now=at).study_id
    assert study_id in complete_quiet_studies(session, stable_seconds=STABLE, now=at + seconds(STABLE + 1))
    if sent:
        relay_sent(session, study_id)
    return study_id


def relay_sent(session, study_id: int) -> None:
    outbox.mark_sent(session, ids=[m.id for m in outbox.pending(session) if m.study_id == study_id])


def draft_queued(session, *, at: dt.datetime, priority: Priority = Priority.ROUTINE, sent: bool = True) -> int:
    """A study triaged at ``at`` with a MedGemma draft queued."""
    study_id = queued_study(session, at=at - seconds(60), priority=priority)
    assert claim(session, study_id=study_id, revision=1, worker="triage-worker:1") is not None
    assert record_result(session, study_id=study_id, revision=1, priority=priority, urgency_score=1.0, reasons=[],
                         scores=[], draft=True, now=at)
    if sent:
        relay_sent(session, study_id)
    return study_id


def sweep(session, now: dt.datetime):
    return redrive_stuck(session, running_timeout=RUNNING_TIMEOUT, queued_timeout=QUEUED_TIMEOUT,
                         worker_lost_after=WORKER_LOST, now=now)


def unsent(sessions, study_id: int, task: str) -> int:
    return count(sessions, OutboxMessage, OutboxMessage.study_id == study_id, OutboxMessage.task == task,
                 OutboxMessage.sent_at.is_(None))



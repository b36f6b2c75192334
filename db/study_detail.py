"""One study in full for the reader: its worklist row, finding scores, reasons, newest draft,
instances and history (events, escalations and claims included)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.drafts import DraftView
from db.models import Draft, Event, Instance, Study, as_utc
from db.scores import FindingScore, finding_scores
from db.worklist import WorklistRow, _row


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceRow:
    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    modality: str | None
    view_position: str | None
    view: str | None  # frontal / lateral
    path: str  # relative to the data folder
    received_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryEvent:
    stage: str  # a common.EventStage value
    detail: str
    at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class StudyDetail:
    row: WorklistRow
    findings: tuple[FindingScore, ...]
    reasons: tuple[str, ...]
    draft: DraftView | None
    instances: tuple[InstanceRow, ...]  # one per SOP instance: its newest revision
    history: tuple[HistoryEvent, ...]  # oldest first
    revisions: tuple[InstanceRow, ...] = ()  # earlier revisions of those instances, replaced by a newer one


def study_detail(session: Session, *, study_uid: str) -> StudyDetail | None:
    """The study with that Study Instance UID, or None when there is none."""
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_uid))
    if study is None:
        return None
    draft = session.scalars(
        select(Draft).where(Draft.study_id == study.id).order_by(Draft.revision.desc()).limit(1)
    ).first()
    findings = finding_scores(session, [study]).get(study.id, ())
    row = _row(study, study.effective_rank, None if draft is None else DraftView.of(draft), findings)
    rows = [
        InstanceRow(i.sop_instance_uid, i.series_instance_uid, i.sop_class_uid, i.modality, i.view_position, i.view,
                    i.path, as_utc(i.received_at))
        for i in session.scalars(select(Instance).where(Instance.study_id == study.id).order_by(Instance.id))
    ]
    newest = {row.sop_instance_uid: row for row in rows}  # in arrival order: the last copy wins
    instances = tuple(row for row in rows if newest[row.sop_instance_uid] is row)
    revisions = tuple(row for row in rows if newest[row.sop_instance_uid] is not row)
    history = tuple(
        HistoryEvent(e.stage, e.detail, as_utc(e.created_at))
        for e in session.scalars(select(Event).where(Event.study_id == study.id).order_by(Event.created_at, Event.id))
    )
    return StudyDetail(row, findings, row.reasons, row.draft, instances, history, revisions)

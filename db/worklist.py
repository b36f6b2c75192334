"""The radiologists' worklist, in the reading order of ``common.reading_order``.

The order is read from columns kept on each study (``effective_rank``, ``urgency_key``,
``received_at``, ``id``) through one partial index over the unread studies, so a page costs the
same at 1,000 studies as at 100,000: ``page`` seeks from an opaque keyset cursor instead of
skipping rows. ``worklist`` is the older whole-window list that computes the escalation at read
time; it stays until the API has moved to ``page``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from typing import Literal

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from common import DraftStatus, Priority, StudyStatus
from db.drafts import DraftView
from db.models import Draft, Study, as_utc
from db.scores import FindingScore, finding_scores

DEFAULT_PAGE = 50
MAX_PAGE = 200


class BadWorklistQuery(ValueError):
    """A worklist parameter that cannot be served (HTTP 400); the message says which."""


class BadCursor(BadWorklistQuery):
    """A cursor this server did not hand out (or from an older version)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Filters:
    """Which studies a page lists; the defaults: every active (unread) study."""

    status: tuple[StudyStatus, ...] = ()  # empty: any
    priority: tuple[Priority, ...] = ()  # effective priority; empty: any
    claimed: Literal["me", "unclaimed", "any"] = "any"
    user: str | None = None  # who "me" is
    accession_prefix: str | None = None
    include_read: bool = False
    received_since: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class WorklistRow:
    """One study on the worklist, waiting-time escalation applied; times are aware UTC."""

    study_instance_uid: str
    accession_number: str | None
    priority: Priority  # effective: after escalation
    escalated: bool
    ordered_priority: Priority
    urgency_score: float | None
    status: StudyStatus
    reasons: tuple[str, ...]
    revision: int
    instances: int
    received_at: dt.datetime
    completed_at: dt.datetime | None
    triaged_at: dt.datetime | None
    draft_status: DraftStatus | None
    draft: DraftView | None  # the newest revision's
    ai_priority: Priority | None = None  # the more urgent of ordered and AI, before escalation; None until triaged
    escalated_from: Priority | None = None  # the class waiting raised it from
    findings: tuple[FindingScore, ...] = ()  # the current revision's, highest first (``page`` and detail)
    claimed_by: str | None = None  # the reader holding it (``Study.reader``)
    claimed_at: dt.datetime | None = None
    read_by: str | None = None
    read_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    rows: list[WorklistRow]
    next_cursor: str | None  # None: this was the last page


_ORDER = (Study.effective_rank.desc(), Study.urgency_key.desc(), Study.received_at, Study.id)


def page(session: Session, *, now: dt.datetime | None = None, filters: Filters = Filters(),
         cursor: str | None = None, limit: int = DEFAULT_PAGE) -> Page:
    """One page of the worklist in reading order, after ``cursor`` (None: from the top).

    Raises
    ------
    BadWorklistQuery
        ``limit`` outside 1..200, "me" without a user, or a bad ``cursor`` (``BadCursor``).
    """
    if not 1 <= limit <= MAX_PAGE:
        raise BadWorklistQuery(f"limit must be between 1 and {MAX_PAGE}")
    base = select(Study).where(*_conditions(session, filters))
    if cursor is None:
        parts = [base.order_by(*_ORDER)]
    else:
        rank, key, received, study_id = decode_cursor(cursor)
        # The rows after the cursor are three index ranges, each already in reading order.
        parts = [
            base.where(Study.effective_rank == rank, Study.urgency_key == key,
                       tuple_(Study.received_at, Study.id) > tuple_(received, study_id))
            .order_by(Study.received_at, Study.id),
            base.where(Study.effective_rank == rank, Study.urgency_key < key).order_by(*_ORDER[1:]),
            base.where(Study.effective_rank < rank).order_by(*_ORDER),
        ]
    studies: list[Study] = []
    for part in parts:
        studies += session.scalars(part.limit(limit + 1 - len(studies))).all()
        if len(studies) > limit:
            break
    more = len(studies) > limit
    studies = studies[:limit]
    drafts = _latest_drafts(session, [s.id for s in studies])
    scores = finding_scores(session, studies)
    rows = [_row(s, s.effective_rank, drafts.get(s.id), scores.get(s.id, ())) for s in studies]
    return Page(rows, encode_cursor(studies[-1]) if more else None)


def _conditions(session: Session, f: Filters) -> list:
    where = [] if f.include_read else [Study.read_at.is_(None)]
    if f.status:
        where.append(Study.status.in_([StudyStatus(s).value for s in f.status]))
    if f.priority:
        where.append(Study.effective_rank.in_(sorted({Priority(p).rank for p in f.priority})))
    if f.claimed == "me":
        if not f.user:
            raise BadWorklistQuery('claimed="me" needs a signed-in user')
        where.append(Study.reader == f.user)
    elif f.claimed == "unclaimed":
        where.append(Study.reader.is_(None))
    elif f.claimed != "any":
        raise BadWorklistQuery('claimed must be "me", "unclaimed" or "any"')
    if f.accession_prefix:
        where += _prefix(session, f.accession_prefix)
    if f.received_since is not None:
        where.append(Study.received_at >= f.received_since)
    return where


def _prefix(session: Session, prefix: str) -> list:
    # A byte-order range is exactly "starts with" and uses the accession index (PostgreSQL's
    # is on the "C" collation, whatever the database's).
    column = Study.accession_number
    if session.get_bind().dialect.name == "postgresql":
        column = column.collate("C")
    if ord(prefix[-1]) >= 0x10FFFF:
        return [column >= prefix]
    return [column >= prefix, column < prefix[:-1] + chr(ord(prefix[-1]) + 1)]


def encode_cursor(study: Study) -> str:
    raw = json.dumps([study.effective_rank, study.urgency_key, as_utc(study.received_at).isoformat(), study.id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, float, dt.datetime, int]:
    """The reading-order position a cursor stands for.

    Raises
    ------
    BadCursor
    """
    try:
        rank, key, received, study_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        received = dt.datetime.fromisoformat(received)
        if not (type(rank) is int and type(study_id) is int and isinstance(key, (int, float))
                and not isinstance(key, bool) and received.tzinfo is not None):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("the cursor is not one this worklist handed out") from None
    return rank, float(key), received.astimezone(dt.timezone.utc), study_id


def _latest_drafts(session: Session, study_ids: list[int], chunk: int = 500) -> dict[int, DraftView]:
    # In chunks: one bind parameter per study, and PostgreSQL takes at most 65,535 a statement.
    latest: dict[int, DraftView] = {}
    for start in range(0, len(study_ids), chunk):
        ids = study_ids[start:start + chunk]
        for draft in session.scalars(select(Draft).where(Draft.study_id.in_(ids)).order_by(Draft.revision)):
            latest[draft.study_id] = DraftView.of(draft)  # ascending: the newest revision wins
    return latest


def _row(study: Study, effective_rank: int, draft: DraftView | None,
         findings: tuple[FindingScore, ...] = ()) -> WorklistRow:
    escalated = effective_rank > study.priority_rank
    reasons = list(study.reasons or [])
    if escalated:
        reasons.append(f"escalated from {study.priority}: long wait")
    return WorklistRow(
        study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number,
        priority=Priority.of_rank(effective_rank),
        escalated=escalated,
        ordered_priority=Priority(study.ordered_priority),
        urgency_score=study.urgency_score,
        status=StudyStatus(study.status),
        reasons=tuple(reasons),
        revision=study.revision,
        instances=study.instance_count,
        received_at=as_utc(study.received_at),
        completed_at=_utc(study.completed_at),
        triaged_at=_utc(study.triaged_at),
        draft_status=None if study.draft_status is None else DraftStatus(study.draft_status),
        draft=draft,
        ai_priority=Priority(study.priority) if study.triaged_at is not None else None,
        escalated_from=Priority(study.priority) if escalated else None,
        findings=findings,
        claimed_by=study.reader,
        claimed_at=_utc(study.reader_claimed_at),
        read_by=study.read_by,
        read_at=_utc(study.read_at),
    )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)


def status_counts(session: Session) -> dict[str, int]:
    """How many studies are in each status (for metrics)."""
    return dict(session.execute(select(Study.status, func.count()).group_by(Study.status)).all())


def queue_depths(session: Session) -> dict[str, int]:
    """Studies waiting for a worker, per queue (the database is the queue of record)."""
    triage = session.scalar(select(func.count()).select_from(Study).where(Study.status == StudyStatus.QUEUED)) or 0
    draft = session.scalar(
        select(func.count()).select_from(Study).where(Study.draft_status == DraftStatus.QUEUED)
    ) or 0
    return {"triage": triage, "draft": draft}

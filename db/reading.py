"""A radiologist's actions on a study: claim, release, mark read, and the expiry of idle claims.

Each is one conditional UPDATE, so two readers claiming the same study at once cannot both win
(on SQLite and on PostgreSQL alike), and each writes one event to the study's history. Each
commits; an error rolls back and leaves the study as it was. Messages name no patient data.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import EventStage
from db.models import Event, Study, as_utc, utcnow


class ReadingError(Exception):
    """An action the study's reading state does not allow."""


class StudyNotFound(ReadingError, LookupError):
    """No study has that Study Instance UID (HTTP 404)."""


class ClaimConflict(ReadingError):
    """Another reader holds the study (HTTP 409); ``reader`` says who."""

    def __init__(self, reader: str | None) -> None:
        super().__init__("the study is claimed by another reader")
        self.reader = reader


class NotClaimant(ReadingError):
    """Only the reader who claimed a study, or an admin, may release it (HTTP 403)."""

    def __init__(self) -> None:
        super().__init__("only the reader who claimed the study, or an admin, may release it")


class AlreadyRead(ReadingError):
    """The study was marked read: it is off the worklist (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__("the study was already marked read")


@dataclasses.dataclass(frozen=True, slots=True)
class ReadingState:
    """Who holds a study and whether it was read, after an action."""

    study_instance_uid: str
    reader: str | None
    reader_claimed_at: dt.datetime | None
    read_by: str | None
    read_at: dt.datetime | None
    changed: bool  # False: the action found the study already so (e.g. a reader re-claiming their claim)


def claim(session: Session, *, study_uid: str, user: str, now: dt.datetime | None = None) -> ReadingState:
    """``user`` claims the study; claiming one's own claim again keeps it (and counts as activity).

    Raises
    ------
    StudyNotFound, AlreadyRead, ClaimConflict
    """
    now = now or utcnow()
    study = _unread_and_free_for(session, study_uid, user)
    changed = study.reader is None
    if changed:
        study.reader, study.reader_claimed_at = user, now
        session.add(Event(study_id=study.id, stage=EventStage.CLAIMED, detail=f"by {user}", created_at=now))
    study.reader_active_at = now
    return _commit(session, study, changed)


def release(session: Session, *, study_uid: str, user: str, admin: bool = False,
            now: dt.datetime | None = None) -> ReadingState:
    """End ``user``'s claim (an admin may end anyone's); releasing an unclaimed study changes nothing.

    Raises
    ------
    StudyNotFound, NotClaimant
    """
    now = now or utcnow()
    study = _locked(session, study_uid)
    holder = study.reader
    if holder is None:
        return _commit(session, study, False)
    if holder != user and not admin:
        _refuse(session, NotClaimant())
    _unclaim(study)
    detail = f"by {user}" if holder == user else f"claim of {holder} released by admin {user}"
    session.add(Event(study_id=study.id, stage=EventStage.RELEASED, detail=detail, created_at=now))
    return _commit(session, study, True)


def mark_read(session: Session, *, study_uid: str, user: str, now: dt.datetime | None = None) -> ReadingState:
    """``user`` read the study: it leaves the active worklist, with who and when recorded.

    A study claimed by another reader is theirs to mark read.

    Raises
    ------
    StudyNotFound, AlreadyRead, ClaimConflict
    """
    now = now or utcnow()
    study = _unread_and_free_for(session, study_uid, user)
    study.read_at, study.read_by = now, user
    _unclaim(study)
    session.add(Event(study_id=study.id, stage=EventStage.READ, detail=f"by {user}", created_at=now))
    return _commit(session, study, True)


def _unread_and_free_for(session: Session, study_uid: str, user: str) -> Study:
    """The study, locked, when it is unread and claimed by nobody or by ``user``."""
    study = _locked(session, study_uid)
    if study.read_at is not None:
        _refuse(session, AlreadyRead())
    if study.reader not in (None, user):
        _refuse(session, ClaimConflict(study.reader))
    return study


def expire_idle_claims(session: Session, *, idle_after: dt.timedelta, now: dt.datetime | None = None,
                       limit: int = 500) -> int:
    """Release claims nobody acted on for ``idle_after`` (at most ``limit`` a call); how many."""
    now = now or utcnow()
    idle = session.scalars(
        select(Study)
        .where(Study.reader.is_not(None), Study.reader_active_at <= now - idle_after)
        .order_by(Study.reader_active_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for study in idle:
        minutes = int((now - as_utc(study.reader_active_at)).total_seconds() // 60)
        session.add(Event(study_id=study.id, stage=EventStage.CLAIM_EXPIRED,
                          detail=f"claim of {study.reader} idle {minutes} min", created_at=now))
        _unclaim(study)
    session.commit()
    return len(idle)


def _locked(session: Session, study_uid: str) -> Study:
    # SQLite: the write transaction (BEGIN IMMEDIATE) already serialises writers;
    # PostgreSQL: the row lock makes a second claimant wait, then see the first one's claim.
    study = session.scalar(select(Study).where(Study.study_instance_uid == study_uid).with_for_update())
    if study is None:
        _refuse(session, StudyNotFound("no study has that Study Instance UID"))
    return study


def _refuse(session: Session, error: ReadingError):
    session.rollback()
    raise error


def _unclaim(study: Study) -> None:
    study.reader = study.reader_claimed_at = study.reader_active_at = None


def _commit(session: Session, study: Study, changed: bool) -> ReadingState:
    state = ReadingState(
        study_instance_uid=study.study_instance_uid,
        reader=study.reader,
        reader_claimed_at=_utc(study.reader_claimed_at),
        read_by=study.read_by,
        read_at=_utc(study.read_at),
        changed=changed,
    )
    session.commit()
    return state


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else as_utc(value)

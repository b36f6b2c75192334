"""Retention: what is older than the retention period goes, the worklist and the audit trail stay.

Purged, for data older than the cutoff: the stored image files of studies long finished (their
instance rows stay, marked ``purged_at``), the stored embeddings (scores stay), outbox rows
already handed to the broker, the event log, and deliveries already sent. Studies, their
scores and drafts, and the ``audit`` table are never touched. Each kind goes in batches of
short transactions, so a purge never holds the write lock for long; an interrupted purge is
finished by the next one (a file is removed before its row is marked, and a file already gone
is fine).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from common import StudyStatus
from common.delivery import DeliveryStatus
from db.models import Delivery, Event, Instance, OutboxMessage, Score, Study, utcnow

__all__ = ["Purged", "purge"]

_BATCH = 500  # rows per transaction
_FINISHED = (StudyStatus.TRIAGED, StudyStatus.FAILED)


@dataclasses.dataclass(frozen=True, slots=True)
class Purged:
    """What a purge removed (or, as a dry run, would remove)."""

    images: int = 0  # instance files
    image_bytes: int = 0
    embeddings: int = 0
    outbox: int = 0
    events: int = 0
    deliveries: int = 0


def purge(sessions: sessionmaker[Session], *, data_dir: Path, older_than: dt.timedelta, dry_run: bool = False,
          now: dt.datetime | None = None) -> Purged:
    """Purge what is older than ``older_than`` (see the module); ``dry_run`` only counts it.

    An image is purged when its study is finished (triaged or failed) and neither it, the
    study's last image nor the study's last change is younger than the cutoff.
    """
    cutoff = (now or utcnow()) - older_than
    if dry_run:
        with sessions() as session:
            images, size = session.execute(
                select(func.count(), func.coalesce(func.sum(Instance.size_bytes), 0)).where(_image_due(cutoff))).one()
            return Purged(images=images, image_bytes=int(size),
                          embeddings=_count(session, Score.id, _embedding_due(cutoff)),
                          outbox=_count(session, OutboxMessage.id, _outbox_due(cutoff)),
                          events=_count(session, Event.id, _event_due(cutoff)),
                          deliveries=_count(session, Delivery.id, _delivery_due(cutoff)))
    images, size = _purge_images(sessions, data_dir, cutoff)
    return Purged(images=images, image_bytes=size,
                  embeddings=_in_batches(sessions, Score, _embedding_due(cutoff),
                                         lambda ids: update(Score).where(Score.id.in_(ids)).values(embedding=None)),
                  outbox=_deleted(sessions, OutboxMessage, _outbox_due(cutoff)),
                  events=_deleted(sessions, Event, _event_due(cutoff)),
                  deliveries=_deleted(sessions, Delivery, _delivery_due(cutoff)))


def _image_due(cutoff: dt.datetime):
    finished = select(Study.id).where(Study.status.in_(_FINISHED), Study.last_instance_at < cutoff,
                                      Study.state_changed_at < cutoff)
    return Instance.purged_at.is_(None) & (Instance.received_at < cutoff) & Instance.study_id.in_(finished)


def _embedding_due(cutoff: dt.datetime):
    return Score.embedding.is_not(None) & (Score.created_at < cutoff)


def _outbox_due(cutoff: dt.datetime):
    return OutboxMessage.sent_at.is_not(None) & (OutboxMessage.sent_at < cutoff)  # unsent rows are work to do


def _event_due(cutoff: dt.datetime):
    return Event.created_at < cutoff


def _delivery_due(cutoff: dt.datetime):
    return (Delivery.status == DeliveryStatus.SENT) & (Delivery.sent_at < cutoff)


def _count(session: Session, column, where) -> int:
    return session.scalar(select(func.count(column)).where(where)) or 0


def _purge_images(sessions: sessionmaker[Session], data_dir: Path, cutoff: dt.datetime) -> tuple[int, int]:
    images = size = 0
    while True:
        with sessions() as session:
            rows = session.execute(select(Instance.id, Instance.path, Instance.size_bytes)
                                   .where(_image_due(cutoff)).order_by(Instance.id).limit(_BATCH)).all()
            if not rows:
                return images, size
            ids = [row.id for row in rows]
            # Identical bytes are stored once: a file another, kept row still names stays.
            shared = set(session.scalars(select(Instance.path).where(
                Instance.path.in_({row.path for row in rows}), Instance.purged_at.is_(None), Instance.id.not_in(ids))))
            for row in rows:
                if row.path not in shared:
                    (data_dir / row.path).unlink(missing_ok=True)  # gone: an earlier purge was interrupted
            session.execute(update(Instance).where(Instance.id.in_(ids)).values(purged_at=utcnow()))
            session.commit()
        images += len(rows)
        size += sum(row.size_bytes for row in rows)


def _deleted(sessions: sessionmaker[Session], model, where) -> int:
    return _in_batches(sessions, model, where, lambda ids: delete(model).where(model.id.in_(ids)))


def _in_batches(sessions: sessionmaker[Session], model, where, statement) -> int:
    """Apply ``statement(ids)`` to the rows ``where`` selects, ``_BATCH`` per transaction; how many."""
    done = 0
    while True:
        with sessions() as session:
            ids = list(session.scalars(select(model.id).where(where).order_by(model.id).limit(_BATCH)))
            if not ids:
                return done
            session.execute(statement(ids))
            session.commit()
        done += len(ids)

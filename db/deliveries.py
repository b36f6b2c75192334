"""The delivery outbox: one row per change of a study and destination that receives it, written in
the transaction of the change, then taken in order by that destination's dispatcher.

Ordering and staleness, per destination and study: rows carry ``seq`` 1, 2, …, and only the
lowest pending one is ever due (a failing head holds back that study's later rows, never
another study's nor another destination's). A priority or escalation whose rank is not above
one already sent is stale and is dropped unsent.

Callers hold the study row locked (``SELECT … FOR UPDATE``) when they enqueue, so the next
``seq`` is computed by one transaction at a time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session, aliased

from common import Priority
from common.delivery import Content, DeliveryStatus
from db.models import Delivery, DeliveryDestination, Instance, Study, as_utc, utcnow
from db.scores import FindingScore, scores_at


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A configured destination: its name, kind and what it receives."""

    name: str
    kind: str
    receives: frozenset[Content]


@dataclasses.dataclass(frozen=True, slots=True)
class DueDelivery:
    """A delivery whose attempt is due, with what the dispatcher needs to build its notice."""

    id: int
    control_id: str
    destination: str
    content: Content
    study_id: int
    study_instance_uid: str
    accession_number: str | None
    seq: int
    attempts: int
    payload: dict[str, Any]
    created_at: dt.datetime
    source_paths: tuple[str, ...]  # the study's stored instances, relative to the data folder

    @property
    def announces_priority(self) -> bool:
        return self.content.announces_priority


def sync_destinations(session: Session, routes: Iterable[Route], *, now: dt.datetime | None = None) -> None:
    """Make the configured destinations the active ones (``serve`` calls it at start); one no
    longer configured stays, inactive, so its rows remain visible."""
    now = now or utcnow()
    wanted = {r.name: r for r in routes}
    for row in session.scalars(select(DeliveryDestination)):
        route = wanted.pop(row.name, None)
        if route is None:
            row.active = False
        else:
            row.kind, row.receives, row.active = route.kind, sorted(route.receives), True
        row.updated_at = now
    for route in wanted.values():
        session.add(DeliveryDestination(name=route.name, kind=route.kind, receives=sorted(route.receives),
                                        active=True, updated_at=now))
    session.commit()


def _receivers(session: Session, content: Content) -> list[str]:
    rows = session.execute(select(DeliveryDestination.name, DeliveryDestination.receives)
                           .where(DeliveryDestination.active.is_(True)).order_by(DeliveryDestination.name))
    return [name for name, receives in rows if content.value in (receives or ())]


def new_control_id() -> str:
    """A message control id: 20 characters (HL7 MSH-10 holds no more), 88 random bits."""
    return "RT" + secrets.token_hex(9).upper()


def enqueue(session: Session, study: Study, content: Content, payload: dict[str, Any], *,
            names: list[str] | None = None, now: dt.datetime | None = None) -> int:
    """Add one pending delivery of ``content`` for each active destination that receives it (or
    each of ``names``), in the caller's transaction (which holds ``study`` locked); how many."""
    names = _receivers(session, content) if names is None else names
    if not names:
        return 0
    now = now or utcnow()
    rank = Priority(payload["priority"]).rank if content.announces_priority else None
    last = dict(session.execute(
        select(Delivery.destination, func.max(Delivery.seq))
        .where(Delivery.study_id == study.id, Delivery.destination.in_(names))
        .group_by(Delivery.destination)
    ).all())
    for name in names:
        session.add(Delivery(destination=name, study_id=study.id, revision=study.revision, seq=(last.get(name) or 0) + 1,
                             content=content.value, status=DeliveryStatus.PENDING.value, priority_rank=rank,
                             payload=payload, control_id=new_control_id(), attempts=0, next_attempt_at=now,
                             created_at=now))
    return len(names)


# -- what each change reports: snapshots of our values at the change -------------------------


def _finding(f: FindingScore) -> dict[str, Any]:
    return {"name": f.name, "score": f.score, "kind": f.kind, "threshold": f.threshold, "validated": f.validated}


def findings_of(payload: dict[str, Any]) -> tuple[FindingScore, ...]:
    """The finding scores a payload holds."""
    return tuple(FindingScore(f["name"], float(f["score"]), kind=f.get("kind"), threshold=f.get("threshold"),
                              validated=f.get("validated")) for f in payload.get("findings") or ())


def snapshot(session: Session, study: Study, *, previous_rank: int | None = None,
             with_findings: bool = False, draft: dict[str, Any] | None = None) -> dict[str, Any]:
    """The study's values now (after the change, flushed): effective priority, the class it was
    raised from, the one before the change, score and reasons; optionally its findings and draft."""
    session.flush()
    payload: dict[str, Any] = {
        "revision": study.revision,
        "ordered_priority": study.ordered_priority,
        "priority": Priority.of_rank(study.effective_rank).value,
        "previous_priority": None if previous_rank is None else Priority.of_rank(previous_rank).value,
        "escalated_from": study.escalated_from,
        "urgency_score": study.urgency_score,
        "reasons": list(study.reasons or []),
    }
    if with_findings:
        payload["findings"] = [_finding(f) for f in scores_at(session, {study.id: study.revision}).get(study.id, ())]
    if draft is not None:
        payload["draft"] = draft
    return payload


def after_change(session: Session, study: Study, *, previous_rank: int, rose: Content,
                 report: Content | None = None, draft: dict[str, Any] | None = None,
                 now: dt.datetime | None = None) -> int:
    """Enqueue what a committed change reports: ``rose`` (PRIORITY or ESCALATION) when the
    effective priority rose above ``previous_rank``, then ``report`` (RESULT or DRAFT) if given."""
    count = 0
    # Destinations first: with none configured, a change costs one small query.
    if study.effective_rank > previous_rank and (names := _receivers(session, rose)):
        count += enqueue(session, study, rose, snapshot(session, study, previous_rank=previous_rank),
                         names=names, now=now)
    if report is not None and (names := _receivers(session, report)):
        count += enqueue(session, study, report, snapshot(session, study, with_findings=True, draft=draft),
                         names=names, now=now)
    return count


# -- the dispatcher's side ----------------------------------------------------------------------


def due(session: Session, *, destination: str, limit: int = 20, now: dt.datetime | None = None) -> list[DueDelivery]:
    """The destination's deliveries whose attempt is due, each the first pending one of its study
    (strict order per study), the most urgent study first, then the oldest change."""
    now = now or utcnow()
    earlier = aliased(Delivery)
    blocked = (select(earlier.id)
               .where(earlier.destination == Delivery.destination, earlier.study_id == Delivery.study_id,
                      earlier.status == DeliveryStatus.PENDING.value, earlier.seq < Delivery.seq)
               .exists())
    rows = session.execute(
        select(Delivery, Study)
        .join(Study, Study.id == Delivery.study_id)
        .where(Delivery.destination == destination, Delivery.status == DeliveryStatus.PENDING.value,
               Delivery.next_attempt_at <= now, ~blocked)
        .order_by(Study.effective_rank.desc(), Delivery.id)
        .limit(limit)
    ).all()
    paths = _paths(session, [study.id for _d, study in rows])
    return [DueDelivery(d.id, d.control_id, d.destination, Content(d.content), study.id, study.study_instance_uid,
                        study.accession_number, d.seq, d.attempts, dict(d.payload or {}), as_utc(d.created_at),
                        paths.get(study.id, ()))
            for d, study in rows]


def _paths(session: Session, study_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """Each study's stored files still on disk (not purged by retention), the newest copy of
    each SOP instance, in arrival order."""
    newest: dict[int, dict[str, str]] = {}
    for study_id, sop_uid, path in session.execute(
            select(Instance.study_id, Instance.sop_instance_uid, Instance.path)
            .where(Instance.study_id.in_(study_ids), Instance.purged_at.is_(None)).order_by(Instance.id)):
        newest.setdefault(study_id, {})[sop_uid] = path
    return {study_id: tuple(by_uid.values()) for study_id, by_uid in newest.items()}


def stale(session: Session, delivery: DueDelivery) -> bool:
    """Whether this priority or escalation announces no more than one already sent (never send it)."""
    if not delivery.announces_priority:
        return False
    sent = session.scalar(select(func.max(Delivery.priority_rank)).where(
        Delivery.destination == delivery.destination, Delivery.study_id == delivery.study_id,
        Delivery.status == DeliveryStatus.SENT.value, Delivery.priority_rank.is_not(None)))
    return sent is not None and Priority(delivery.payload["priority"]).rank <= sent


def _finish(session: Session, delivery_id: int, **values: Any) -> bool:
    # Only a pending row moves: an admin may have dropped it while it was being sent.
    done = session.execute(update(Delivery).where(and_(Delivery.id == delivery_id,
                                                       Delivery.status == DeliveryStatus.PENDING.value))
                           .values(**values))
    session.commit()
    return bool(done.rowcount)


def mark_sent(session: Session, *, delivery_id: int, detail: str = "", now: dt.datetime | None = None) -> bool:
    """The peer acknowledged it."""
    now = now or utcnow()
    return _finish(session, delivery_id, status=DeliveryStatus.SENT.value, sent_at=now, last_attempt_at=now,
                   attempts=Delivery.attempts + 1, last_error=detail or None)


def mark_retry(session: Session, *, delivery_id: int, detail: str, retry_at: dt.datetime,
               now: dt.datetime | None = None) -> bool:
    """A failed attempt; the next one at ``retry_at``."""
    return _finish(session, delivery_id, attempts=Delivery.attempts + 1, next_attempt_at=retry_at,
                   last_attempt_at=now or utcnow(), last_error=detail)


def mark_dead(session: Session, *, delivery_id: int, reason: str, attempted: bool = True,
              now: dt.datetime | None = None) -> bool:
    """Refused for good or out of attempts: a dead letter with its reason (no PHI)."""
    now = now or utcnow()
    values: dict[str, Any] = {"status": DeliveryStatus.DEAD.value, "closed_at": now, "last_error": reason}
    if attempted:
        values |= {"attempts": Delivery.attempts + 1, "last_attempt_at": now}
    return _finish(session, delivery_id, **values)


def mark_dropped(session: Session, *, delivery_id: int, reason: str, now: dt.datetime | None = None) -> bool:
    """Never sent, e.g. stale: a higher priority already reached the destination."""
    return _finish(session, delivery_id, status=DeliveryStatus.DROPPED.value, closed_at=now or utcnow(),
                   last_error=reason)


@dataclasses.dataclass(frozen=True, slots=True)
class Backlog:
    """A destination's undelivered rows: how many, and when the oldest change was committed."""

    pending: int
    oldest: dt.datetime | None


def backlogs(session: Session) -> dict[str, Backlog]:
    """Per destination with pending rows, its backlog."""
    rows = session.execute(select(Delivery.destination, func.count(), func.min(Delivery.created_at))
                           .where(Delivery.status == DeliveryStatus.PENDING.value).group_by(Delivery.destination))
    return {name: Backlog(count, None if oldest is None else as_utc(oldest)) for name, count, oldest in rows}

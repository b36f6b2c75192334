"""One destination's dispatcher: takes its due deliveries in order, builds each notice, sends it,
and records what came of it. ``serve`` runs one per destination, each on its own thread, so a
destination that is down or slow delays only itself.

At least once: a delivery is marked sent only after the peer's acknowledgement is in. Killed
between the two, the daemon sends it again after the restart with the same control id (HL7
MSH-10, FHIR identifier, webhook ``X-Radtriage-Delivery``, the SR's UIDs): receivers
deduplicate on it. A failed attempt waits out the destination's backoff; one refused for good,
out of attempts or too old becomes a dead letter with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

from pydicom.errors import InvalidDicomError
from sqlalchemy.orm import Session, sessionmaker

from common import DISCLAIMER, Backoff, Priority
from common.delivery import DeliveryStatus
from db import deliveries
from db.deliveries import DueDelivery
from db.models import utcnow
from worker.deliveries.header import Header, read_header
from worker.deliveries.notice import Notice, Outcome, Sender

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DispatchConfig:
    """How one destination's deliveries are taken and retried.

    Parameters
    ----------
    name : str
        The destination (its rows carry this name).
    backoff : common.Backoff
        Waits between failed attempts.
    max_attempts : int, optional
        Attempts before a dead letter; None: no limit.
    max_age : timedelta, optional
        A delivery still failing this long after its change is a dead letter; None: no limit.
    data_dir : Path
        Absolute folder of the stored instances (the notice's header is read from them).
    batch : int
        Rows read per query.
    """

    name: str
    backoff: Backoff
    data_dir: Path
    max_attempts: int | None = None
    max_age: dt.timedelta | None = None
    batch: int = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """What one attempt came to, for the metric and state callbacks."""

    delivery: DueDelivery
    status: DeliveryStatus  # PENDING: to be retried at ``retry_at``
    detail: str
    retry_at: dt.datetime | None = None


class Dispatcher:
    """Sends one destination's due deliveries; ``run_once`` is one round.

    ``on_finished`` hears every attempt's end (metrics; the draft's SR state for DICOM SR).
    """

    def __init__(self, *, sessions: sessionmaker[Session], config: DispatchConfig, sender: Sender,
                 on_finished: Callable[[Finished], None] | None = None) -> None:
        self._sessions = sessions
        self.config = config
        self.sender = sender
        self._on_finished = on_finished or (lambda _finished: None)

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Send until nothing is due or the destination fails; how many were delivered."""
        delivered = 0
        while True:
            with self._sessions() as session:
                due = deliveries.due(session, destination=self.config.name, limit=self.config.batch,
                                     now=now or utcnow())
            if not due:
                return delivered
            for row in due:
                finished = self._attempt(row)
                if finished is None:
                    continue
                self._on_finished(finished)
                if finished.status is DeliveryStatus.SENT:
                    delivered += 1
                elif finished.status is DeliveryStatus.PENDING:
                    # The peer is failing: the rest of this round would most likely fail too.
                    return delivered

    def _attempt(self, row: DueDelivery) -> Finished | None:
        name = self.config.name
        with self._sessions() as session:
            if deliveries.stale(session, row):
                deliveries.mark_dropped(session, delivery_id=row.id, reason="stale: a higher priority was sent")
                log.info("delivery #%d to %s dropped: study #%d already has a higher priority there",
                         row.id, name, row.study_id)
                return Finished(row, DeliveryStatus.DROPPED, "stale")
        try:
            notice = self.notice(row)
        except (OSError, InvalidDicomError) as exc:
            outcome = Outcome("retry" if not isinstance(exc, InvalidDicomError) else "refused",
                              f"study header unreadable: {type(exc).__name__}")
        else:
            try:
                outcome = self.sender.send(notice)
            except Exception as exc:  # noqa: BLE001  a sender's bug: counted and backed off, never a hot loop
                log.error("sender of %s failed on delivery #%d (%s)", self.config.name, row.id, type(exc).__name__)
                outcome = Outcome("retry", f"sender error: {type(exc).__name__}")
        return self._record(row, outcome)

    def _record(self, row: DueDelivery, outcome: Outcome) -> Finished | None:
        config, now = self.config, utcnow()
        with self._sessions() as session:
            if outcome.result == "delivered":
                changed = deliveries.mark_sent(session, delivery_id=row.id, detail="", now=now)
                finished = Finished(row, DeliveryStatus.SENT, outcome.detail)
            elif outcome.result == "refused" or self._exhausted(row, now):
                reason = outcome.detail if outcome.result == "refused" else \
                    f"gave up after {row.attempts + 1} attempt(s): {outcome.detail}"
                changed = deliveries.mark_dead(session, delivery_id=row.id, reason=reason, now=now)
                finished = Finished(row, DeliveryStatus.DEAD, reason)
            else:
                wait = config.backoff.seconds(row.attempts)
                retry_at = now + dt.timedelta(seconds=wait)
                changed = deliveries.mark_retry(session, delivery_id=row.id, detail=outcome.detail,
                                                retry_at=retry_at, now=now)
                finished = Finished(row, DeliveryStatus.PENDING, outcome.detail, retry_at)
        if not changed:  # an admin dropped or retried it meanwhile: theirs stands
            return None
        level = logging.INFO if finished.status is DeliveryStatus.SENT else logging.WARNING
        log.log(level, "delivery #%d (%s, study #%d) to %s: %s (%s)", row.id, row.content.value, row.study_id,
                config.name, finished.status.value, finished.detail)
        return finished

    def _exhausted(self, row: DueDelivery, now: dt.datetime) -> bool:
        config = self.config
        if config.max_attempts is not None and row.attempts + 1 >= config.max_attempts:
            return True
        return config.max_age is not None and now - row.created_at >= config.max_age

    def notice(self, row: DueDelivery) -> Notice:
        """The notice of one delivery: its snapshot, and the header of the study's stored file.

        Raises
        ------
        OSError, pydicom.errors.InvalidDicomError
            The stored file cannot be read.
        """
        header = read_header(self.config.data_dir / row.source_paths[0]) if row.source_paths else Header()
        return notice_of(row, header)

    def close(self) -> None:
        self.sender.close()


def notice_of(row: DueDelivery, header: Header) -> Notice:
    """A delivery row and its study's header as the notice a sender gets."""
    payload = row.payload
    draft = payload.get("draft") or {}

    def priority(key: str) -> Priority | None:
        return None if payload.get(key) is None else Priority(payload[key])

    return Notice(
        delivery_id=row.id, control_id=row.control_id, content=row.content, destination=row.destination,
        study_id=row.study_id, study_instance_uid=row.study_instance_uid,
        accession_number=header.accession_number or row.accession_number,
        placer_order_number=header.placer_order_number, filler_order_number=header.filler_order_number,
        requested_procedure_id=header.requested_procedure_id, patient_id=header.patient_id,
        patient_name=header.patient_name, patient_birth_date=header.patient_birth_date,
        patient_sex=header.patient_sex, study_datetime=header.study_datetime,
        ordered_priority=Priority(payload["ordered_priority"]), priority=Priority(payload["priority"]),
        previous_priority=priority("previous_priority"), escalated_from=priority("escalated_from"),
        urgency_score=payload.get("urgency_score"), reasons=tuple(payload.get("reasons") or ()),
        findings=deliveries.findings_of(payload),
        draft_findings=draft.get("findings"), draft_impression=draft.get("impression"),
        draft_model=draft.get("model_id"), disclaimer=draft.get("disclaimer") or DISCLAIMER,
        created_at=row.created_at,
    )

"""Delivery metrics per destination: sent, failed (to be retried), dead-lettered and dropped
counters, the time from a change to its acknowledgement, and the backlog's age read at scrape
time. The only label is the destination's name (never a patient's or a study's)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session, sessionmaker

from common.delivery import DeliveryStatus
from db.deliveries import backlogs
from db.models import utcnow
from radtriage import metrics
from worker.deliveries.dispatcher import Finished

SENT = Counter("radtriage_deliveries_sent", "Deliveries the destination acknowledged", ["destination"])
FAILED = Counter("radtriage_deliveries_failed", "Delivery attempts that failed and will be retried", ["destination"])
DEAD = Counter("radtriage_deliveries_dead_lettered", "Deliveries refused for good or out of attempts", ["destination"])
DROPPED = Counter("radtriage_deliveries_dropped", "Deliveries never sent: stale (a higher priority went first)",
                  ["destination"])
TO_DELIVERED = Histogram(
    "radtriage_triaged_to_delivered_seconds",
    "From the committed change (triage, draft, escalation) to the destination's acknowledgement",
    ["destination"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600),
)
_COUNTERS = {DeliveryStatus.SENT: SENT, DeliveryStatus.PENDING: FAILED, DeliveryStatus.DEAD: DEAD,
             DeliveryStatus.DROPPED: DROPPED}


def start_at_zero(destinations: Iterable[str]) -> None:
    """Every configured destination's series exist (at 0) before its first delivery."""
    for name in destinations:
        for counter in _COUNTERS.values():
            counter.labels(destination=name)
        TO_DELIVERED.labels(destination=name)


def record(finished: Finished) -> None:
    """Count one attempt's end (a dispatcher's ``on_finished``)."""
    name = finished.delivery.destination
    _COUNTERS[finished.status].labels(destination=name).inc()
    if finished.status is DeliveryStatus.SENT:
        TO_DELIVERED.labels(destination=name).observe(max(0.0, (utcnow() - finished.delivery.created_at).total_seconds()))


def backlog_gauges(reads: sessionmaker[Session], *, destinations: Iterable[str],
                   limit_minutes: float) -> metrics.GaugeCollector:
    """Per destination: undelivered rows, the age of the oldest, and the age that fires the alert."""
    names = list(destinations)

    def read():
        with reads() as session:
            found = backlogs(session)
        now = utcnow()
        pending = {name: 0 for name in names} | {name: b.pending for name, b in found.items()}
        ages = {name: 0.0 for name in names} | {
            name: max(0.0, (now - b.oldest).total_seconds()) for name, b in found.items() if b.oldest is not None}
        return {
            "radtriage_delivery_backlog": ("Deliveries not yet acknowledged, by destination", "destination", pending),
            "radtriage_delivery_backlog_age_seconds": (
                "Age of the oldest undelivered change, by destination (0: none waiting)", "destination", ages),
            "radtriage_delivery_backlog_limit_seconds": (
                "Backlog age that fires RadtriageDeliveryBacklog (setting delivery_backlog_alert_minutes)", "",
                {"": limit_minutes * 60}),
        }

    return metrics.GaugeCollector(read)

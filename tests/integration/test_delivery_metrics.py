"""Delivery metrics per destination: counters from 0, the backlog's age, labels only destination names."""

from __future__ import annotations

import datetime as dt

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from common import Priority
from common.delivery import Content
from db.deliveries import Route, sync_destinations
from db.models import utcnow
from radtriage import metrics_deliveries
from tests.integration.hl7_support import dispatcher, stored_study, triage
from tests.integration.mllp_receiver import MllpReceiver


def _samples(collector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode())
            for s in family.samples}


def _counter(name: str, destination: str) -> float:
    metric = {"sent": metrics_deliveries.SENT, "failed": metrics_deliveries.FAILED}[name]
    return metric.labels(destination=destination)._value.get()


def test_backlog_age_then_sent_and_failed_counts_per_destination(sqlite_sessions, tmp_path) -> None:
    sessions, data_dir = sqlite_sessions, tmp_path / "data"
    data_dir.mkdir()
    with sessions() as session:
        sync_destinations(session, [Route("ris-metrics", "hl7v2", frozenset(Content))])
    metrics_deliveries.start_at_zero(["ris-metrics", "idle"])
    gauges = metrics_deliveries.backlog_gauges(sessions, destinations=["ris-metrics", "idle"], limit_minutes=15)
    assert _samples(gauges)[("radtriage_delivery_backlog_age_seconds", (("destination", "idle"),))] == 0.0
    assert _samples(gauges)[("radtriage_delivery_backlog_limit_seconds", ())] == 900.0

    study_id, _ = stored_study(sessions, data_dir, seed=31)
    triage(sessions, study_id, Priority.STAT)
    later = utcnow() + dt.timedelta(minutes=20)
    age = _samples(gauges)[("radtriage_delivery_backlog_age_seconds", (("destination", "ris-metrics"),))]
    assert 0 <= age < 60
    assert _samples(gauges)[("radtriage_delivery_backlog", (("destination", "ris-metrics"),))] == 2

    sent, failed = _counter("sent", "ris-metrics"), _counter("failed", "ris-metrics")
    with MllpReceiver(["AE"]) as ris:
        ris_dispatcher = dispatcher(sessions, data_dir, ris.port, name="ris-metrics", on_finished=metrics_deliveries.record)
        ris_dispatcher.run_once()
        ris_dispatcher.run_once(now=later)
    assert (_counter("sent", "ris-metrics") - sent, _counter("failed", "ris-metrics") - failed) == (2, 1)
    assert _samples(gauges)[("radtriage_delivery_backlog_age_seconds", (("destination", "ris-metrics"),))] == 0.0

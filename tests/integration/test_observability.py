"""What an operator reads besides the end-to-end scrape: the per-study stage times from committed
timestamps, the oldest unread study per priority, database errors, JSON log lines with the
study's internal id, refused presentation contexts kept quiet, backfill progress counted into a
running daemon's metrics."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from common import Priority
from common.log_context import about_study
from db.assembly import complete_quiet_studies
from db.ingest import NewInstance, record_instance
from db.models import Study
from db.timings import oldest_unread_seconds
from db.triage import claim, record_result
from radtriage import logs, metrics
from radtriage.stage_metrics import StageMetrics
from tests.factories import radiograph, write
from tests.integration.listener_harness import AE_TITLE, running_listener

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def _instance(n: int, study: str, ordered: Priority = Priority.ROUTINE) -> NewInstance:
    return NewInstance(study_instance_uid=study, series_instance_uid=f"{study}.1", sop_instance_uid=f"{study}.1.{n}",
                       sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1", transfer_syntax_uid="1.2.840.10008.1.2.1",
                       ordered_priority=ordered, path=f"objects/{study}.{n}.dcm", content_hash=f"blake3:{study}{n}",
                       size_bytes=1, accession_number=None)


def test_each_study_stage_is_observed_once_from_its_committed_times(sessions):
    recorded: list[tuple[str, float]] = []
    stages = StageMetrics(reads=sessions, record=lambda stage, seconds: recorded.append((stage, seconds)))
    with sessions() as session:  # a study finished before the loop started is not counted
        old = record_instance(session, new=_instance(1, "1.2.9"), now=T0 - dt.timedelta(hours=1)).study_id
        complete_quiet_studies(session, stable_seconds=0, now=T0 - dt.timedelta(minutes=59))
    assert stages.run_once() == 0
    with sessions() as session:
        study_id = record_instance(session, new=_instance(1, "1.2.3"), now=T0).study_id
        record_instance(session, new=_instance(2, "1.2.3"), now=T0 + dt.timedelta(seconds=3))
        complete_quiet_studies(session, stable_seconds=1, now=T0 + dt.timedelta(seconds=5))
    stages.run_once()
    assert recorded == [("first_to_last_image", 3.0), ("last_image_to_complete", 2.0)]
    with sessions() as session:
        claim(session, study_id=study_id, revision=1, worker="test:1")
        record_result(session, study_id=study_id, revision=1, priority=Priority.URGENT, urgency_score=50,
                      reasons=[], scores=[], now=T0 + dt.timedelta(seconds=9))
    stages.run_once()
    stages.run_once()  # nothing new: nothing observed twice
    assert recorded[2:] == [("complete_to_triaged", 4.0), ("last_image_to_priority", 6.0)]
    assert old != study_id


def test_oldest_unread_study_per_effective_priority(sessions):
    with sessions() as session:
        record_instance(session, new=_instance(1, "1.2.4", Priority.STAT), now=T0)
        record_instance(session, new=_instance(1, "1.2.5", Priority.STAT), now=T0 + dt.timedelta(minutes=10))
        routine = record_instance(session, new=_instance(1, "1.2.6"), now=T0 - dt.timedelta(hours=2)).study_id
        session.get(Study, routine).read_at = T0  # read: no longer waiting
        session.commit()
        waits = oldest_unread_seconds(session, now=T0 + dt.timedelta(minutes=30))
    assert waits == {Priority.STAT: 1800.0, Priority.URGENT: 0.0, Priority.ROUTINE: 0.0}


def test_database_errors_are_counted_by_kind(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    before = metrics.DATABASE_ERRORS.labels(kind="operational")._value.get()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT * FROM no_such_table"))
    except sa.exc.OperationalError:
        pass
    assert metrics.DATABASE_ERRORS.labels(kind="operational")._value.get() == before + 1


def test_json_log_lines_name_the_study_by_internal_id_only(capsys):
    logs.configure("INFO", "json")
    try:
        log = logging.getLogger("radtriage.test")
        with about_study(41):
            log.warning("scoring failed")
        log.info("3 study(ies) complete: #%s", "7, #8")
        log.info("SR for draft #%d sent", 5)  # a draft's id is not a study's
        logging.getLogger("celery.app.trace").info("Task succeeded", extra={
            "data": {"name": "radtriage.triage", "args": "[12, 1]"}})
    finally:
        logs.configure("INFO")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line.get("study_id") for line in lines] == [41, None, None, 12]
    assert lines[1]["study_ids"] == [7, 8] and "study_ids" not in lines[2]
    assert {"time", "level", "logger", "process", "message"} <= set(lines[0])


def test_refused_presentation_contexts_are_one_debug_line_and_no_refusal(tmp_path, dcmtk, caplog):
    """storescu proposes every storage class it knows (~120 contexts): routine, not news."""
    with caplog.at_level(logging.DEBUG, logger="dicom.listener"), running_listener(tmp_path) as harness:
        subprocess.run(["storescu", "-aec", AE_TITLE, "127.0.0.1", str(harness.port),
                        str(write(radiograph(), tmp_path / "push"))], check=True, capture_output=True, timeout=60)
        assert [result for result, _code in harness.stores] == ["stored"]
    about_contexts = [r for r in caplog.records if "presentation context" in r.getMessage()]
    assert len(about_contexts) == 1 and about_contexts[0].levelno == logging.DEBUG
    refused = int(about_contexts[0].getMessage().split(" with ")[1].split()[0])
    assert refused > 50, about_contexts[0].getMessage()
    assert harness.refusals == []


def test_backfill_progress_is_counted_into_the_daemons_metrics(tmp_path):
    data = tmp_path / "data"
    (data / "metrics").mkdir(parents=True)  # as a running serve or listen keeps it
    files = [write(radiograph(seed=n), tmp_path / "archive") for n in range(3)]
    env = {"RADTRIAGE_DATA_DIR": str(data), "RADTRIAGE_CXR_FOUNDATION_DIR": str(tmp_path / "no-models"),
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "radtriage", "backfill", str(tmp_path / "archive")],
                          check=False, env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(data / "metrics"))
    text = generate_latest(registry).decode()
    for phase, count in (("reading", len(files)), ("triaging", len(files))):
        assert f'radtriage_backfill_planned_total{{phase="{phase}"}} {float(count)}' in text, text
        assert f'radtriage_backfill_done_total{{phase="{phase}"}} {float(count)}' in text, text


def test_a_worker_reports_its_model_loaded_once_a_task_has_loaded_it():
    from radtriage.worker_metrics import ModelGauges

    class Context:  # the two WorkerContext methods the gauges read: (model, None) or (None, reason)
        loads = 0

        def triager(self):
            Context.loads += 1
            return object(), None

        def drafter(self):
            return None, "MedGemma weights not installed"

    gauge = metrics.MODEL_LOADED
    outcomes = []
    models = ModelGauges(Context(), queues=["triage", "draft"], embedder="medsiglip")
    assert gauge.labels(model="medsiglip")._value.get() == 0 and gauge.labels(model="medgemma")._value.get() == 0
    after_triage = models.after_triage(lambda outcome, seconds: outcomes.append(outcome))
    after_triage("skipped", 0.01)  # a skipped task loads nothing: the model is not asked for
    assert Context.loads == 0 and gauge.labels(model="medsiglip")._value.get() == 0
    after_triage("triaged", 0.5)
    assert gauge.labels(model="medsiglip")._value.get() == 1 and outcomes == ["skipped", "triaged"]
    models.after_draft(lambda *_: None)("failed", 1.0)
    assert gauge.labels(model="medgemma")._value.get() == 0

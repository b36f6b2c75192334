"""Backfill at archive scale: a run killed half-way is finished by the next one, which takes in
nothing twice and leaves what was done alone; the phases report totals (for the rate and the
time left) while reading and triaging overlap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from tests.factories import radiograph
from tests.integration.test_backfill import REPO, backfill, database_state

STUDIES = 300


def archive(folder: Path, studies: int) -> Path:
    """Two-view studies, one folder each."""
    for number in range(studies):
        uid = generate_uid()
        target = folder / f"{number:04d}"
        target.mkdir(parents=True)
        for index, view in enumerate(("PA", "LL")):
            radiograph(study_uid=uid, view=view, seed=2 * number + index).save_as(
                target / f"{index}.dcm", enforce_file_format=True)
    return folder


def triaged_count(data_dir: Path) -> int:
    database = data_dir / "radtriage.sqlite3"
    if not database.exists():
        return 0
    engine = create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT COUNT(*) FROM studies WHERE status = 'triaged'")).scalar_one()
    except OperationalError:  # not migrated yet
        return 0
    finally:
        engine.dispose()


def test_a_killed_backfill_is_finished_by_the_next_run(tmp_path, cxr_foundation_dir) -> None:
    source = archive(tmp_path / "archive", STUDIES)
    data_dir = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADTRIAGE_")}
    env.update(RADTRIAGE_DATA_DIR=str(data_dir), RADTRIAGE_CXR_FOUNDATION_DIR=str(cxr_foundation_dir),
               RADTRIAGE_MEDGEMMA_MODEL=str(tmp_path / "no-medgemma"))
    first = subprocess.Popen([sys.executable, "-m", "radtriage", "backfill", str(source)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while triaged_count(data_dir) < 20 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # no chance to tidy up: as a power cut or the OOM killer
    finally:
        first.wait(timeout=30)
    # One study as a run killed mid-triage leaves it: claimed by a process that no longer beats.
    engine = create_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
    with engine.begin() as connection:
        half_done = connection.execute(text(
            "UPDATE studies SET status = 'triaging', claimed_by = 'gone:1' WHERE id = (SELECT MIN(study_id) "
            "FROM instances GROUP BY study_id HAVING COUNT(*) = 2 AND study_id IN "
            "(SELECT id FROM studies WHERE status != 'triaged') LIMIT 1) RETURNING id")).scalar_one()
    engine.dispose()
    before = database_state(data_dir)
    done_before = {row.id: row for row in before["studies"] if row.status == "triaged"}
    assert 20 <= len(done_before) < STUDIES, "the run was not stopped half-way"
    stored_before = before["counts"]["instances"]

    second = backfill(data_dir, cxr_foundation_dir, str(source))
    assert second["files"] == 2 * STUDIES
    assert second["already stored"] == stored_before  # nothing taken in twice
    assert second["stored"] == 2 * STUDIES - stored_before
    assert second["studies"] == second["scored"] == STUDIES

    after = database_state(data_dir)
    # The kill may leave a half-written temporary file: too young to be removed as an orphan yet.
    objects = {name for name in after["objects"] if not Path(name).name.startswith(".incoming-")}
    assert after["counts"]["instances"] == len(objects) == 2 * STUDIES
    assert after["scored"] == STUDIES and after["failed"] == 0
    studies = {row.id: row for row in after["studies"]}
    assert all(row.revision == 1 for row in studies.values())  # no study reopened by its own files
    # What the first run finished, the second left alone: same row, no new event.
    assert all(studies[study_id] == row for study_id, row in done_before.items())
    old_events = {event.id for event in before["events"]}
    assert not any(event.study_id in done_before for event in after["events"] if event.id not in old_events)
    assert studies[half_done].status == "triaged"
    triaged_events = [event.study_id for event in after["events"] if event.stage == "triaged"]
    assert sorted(triaged_events) == sorted(studies)  # every study triaged exactly once


def test_phases_overlap_and_report_their_totals(tmp_path, cxr_foundation_dir) -> None:
    from db.session import make_engine, migrate
    from radtriage.settings import load_settings
    from radtriage.wiring import worker_config
    from worker import backfill as runner
    from worker.tasks import WorkerContext

    source = archive(tmp_path / "archive", 120)
    os.environ["RADTRIAGE_DATA_DIR"] = str(tmp_path / "data")
    try:
        settings = load_settings(None).model_copy(update={"cxr_foundation_dir": cxr_foundation_dir})
    finally:
        del os.environ["RADTRIAGE_DATA_DIR"]
    settings.data_dir.mkdir(parents=True)
    migrate(make_engine(settings.effective_database_url))
    phases: dict[str, int] = {}
    events: list[tuple[str, float]] = []

    def progress(items, label, total):
        phases[label] = total
        for item in items:
            events.append((label, time.monotonic()))
            yield item

    summary = runner.run(WorkerContext(worker_config(settings)), [source], progress=progress, window=4, batch=4)
    assert summary.studies == summary.scored == 120
    assert phases["reading"] == 240  # counted before reading: the bar knows its end
    assert 0.8 * 120 <= phases["triaging"] <= 1.2 * 120  # estimated from the studies read so far
    first_triaged = min(at for label, at in events if label == "triaging")
    last_read = max(at for label, at in events if label == "reading")
    assert first_triaged < last_read  # triage started while files were still being read

"""``radtriage backfill`` run as a user runs it (a subprocess): the summary adds up, a second
run changes nothing, ``--dry-run`` stores nothing, and a DICOMDIR is followed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, inspect, text

from tests.factories import radiograph

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 180  # seconds; a run over the samples takes about ten
_LINE = re.compile(r"^ {0,2}(?P<key>[a-z][a-z ]*): (?P<value>\d+)$")


def backfill(data_dir: Path, model_dir: Path, *args: str) -> dict[str, int]:
    """Run ``python -m radtriage backfill ARGS`` on ``data_dir``; the summary's counts by label."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADTRIAGE_")}
    env.update(
        RADTRIAGE_DATA_DIR=str(data_dir),
        RADTRIAGE_CXR_FOUNDATION_DIR=str(model_dir),
        RADTRIAGE_MEDGEMMA_MODEL=str(data_dir.parent / "no-medgemma"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "radtriage", "backfill", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    counts = {}
    for line in proc.stdout.splitlines():
        match = _LINE.match(line)
        if match:
            assert match["key"] not in counts, f"label printed twice: {line!r}"
            counts[match["key"]] = int(match["value"])
    return counts


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def database_state(data_dir: Path) -> dict:
    """Row counts of every table, the events and studies as stored, and the stored objects."""
    engine = create_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
    try:
        with engine.connect() as connection:
            counts = {table: connection.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
                      for table in inspect(connection).get_table_names()}
            events = connection.execute(text("SELECT * FROM events ORDER BY id")).all()
            studies = connection.execute(text("SELECT * FROM studies ORDER BY id")).all()
            failed = connection.execute(text("SELECT COUNT(*) FROM studies WHERE status = 'failed'")).scalar_one()
            scored = connection.execute(text(
                "SELECT COUNT(*) FROM studies WHERE status = 'triaged' AND urgency_score IS NOT NULL")).scalar_one()
    finally:
        engine.dispose()
    return {"counts": counts, "events": events, "studies": studies, "failed": failed, "scored": scored,
            "objects": files_under(data_dir / "objects")}


def test_backfill_of_the_samples_adds_up_and_is_idempotent(tmp_path, samples, cxr_foundation_dir) -> None:
    data_dir = tmp_path / "data"
    on_disk = [p for p in samples.rglob("*") if p.is_file()]

    first = backfill(data_dir, cxr_foundation_dir, str(samples))
    assert first["files"] == len(on_disk)
    assert first["stored"] + first["already stored"] + first["skipped"] == first["files"]
    assert first["scored"] + first["not scored"] + first["failed"] == first["studies"]
    assert first["stored"] > 0 and first["skipped"] > 0  # README.md, manifest.tsv … are not DICOM
    assert first["scored"] > 0  # the stand-in model scored the readable chest images
    assert first["failed"] > 0  # e.g. edge/966_bad_COM_marker.dcm: undecodable, on the worklist as failed
    # derived/ holds chest/CR-MONO1-10-chest.dcm in six other transfer syntaxes: one image, stored once.
    assert first["already stored"] == len(list((samples / "derived").glob("*.dcm")))

    state = database_state(data_dir)
    assert state["counts"]["instances"] == first["stored"]
    assert state["counts"]["studies"] == first["studies"]
    assert (state["scored"], state["failed"]) == (first["scored"], first["failed"])
    assert len(state["objects"]) == first["stored"]
    assert state["counts"]["events"] > 0

    second = backfill(data_dir, cxr_foundation_dir, str(samples))
    assert second["stored"] == 0
    assert second["already stored"] == first["stored"] + first["already stored"]
    assert {k: second[k] for k in ("files", "skipped", "studies", "scored", "not scored", "failed")} == {
        k: first[k] for k in ("files", "skipped", "studies", "scored", "not scored", "failed")}
    after = database_state(data_dir)
    assert after["counts"] == state["counts"]
    assert after["events"] == state["events"]
    assert after["studies"] == state["studies"]
    assert after["objects"] == state["objects"]


def test_dry_run_stores_nothing(tmp_path, samples, cxr_foundation_dir) -> None:
    data_dir = tmp_path / "data"
    on_disk = [p for p in samples.rglob("*") if p.is_file()]

    dry = backfill(data_dir, cxr_foundation_dir, "--dry-run", str(samples))
    assert dry["files"] == len(on_disk)
    assert dry["would be stored"] > 0
    assert dry["would be stored"] + dry["skipped"] == dry["files"]
    assert "studies" not in dry and "stored" not in dry
    assert files_under(data_dir / "objects") == set()
    if (data_dir / "radtriage.sqlite3").exists():
        counts = database_state(data_dir)["counts"]
        assert counts.get("studies", 0) == counts.get("instances", 0) == counts.get("outbox", 0) == 0


def test_backfill_follows_a_dicomdir(tmp_path, cxr_foundation_dir) -> None:
    study_uid = generate_uid()
    datasets = [radiograph(study_uid=study_uid, seed=1), radiograph(study_uid=study_uid, seed=2, view="LL"),
                radiograph(seed=3, priority="STAT")]
    file_set = FileSet()
    for number, ds in enumerate(datasets, start=1):
        # The STUDY, SERIES and IMAGE records of a DICOMDIR need these.
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", f"S{number}"
        ds.SeriesNumber = ds.InstanceNumber = number
        file_set.add(ds)
    media = tmp_path / "media"
    file_set.write(media)
    assert (media / "DICOMDIR").is_file()
    stray = media / "not-in-the-dicomdir.dcm"  # a file the DICOMDIR does not name is not read
    radiograph(seed=9).save_as(stray, enforce_file_format=True)

    data_dir = tmp_path / "data"
    summary = backfill(data_dir, cxr_foundation_dir, str(media / "DICOMDIR"))
    assert {k: summary[k] for k in ("files", "stored", "already stored", "skipped", "studies", "scored")} == {
        "files": 3, "stored": 3, "already stored": 0, "skipped": 0, "studies": 2, "scored": 2}

    engine = create_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(text("SELECT sop_instance_uid FROM instances")).scalars())
            statuses = dict(connection.execute(text("SELECT study_instance_uid, priority FROM studies")).all())
    finally:
        engine.dispose()
    assert stored == {str(ds.SOPInstanceUID) for ds in datasets}
    assert statuses[str(datasets[2].StudyInstanceUID)] == "STAT"  # the order's priority survives
    assert len(files_under(data_dir / "objects")) == 3


"""Statuses, never a crash: out of resources, bad datasets and duplicates, over a real association."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

import pytest
from sqlalchemy import select

from db.assembly import complete_quiet_studies
from db.models import Instance, OutboxMessage, Study
from dicom.scu import echo, send_datasets
from tests.conftest import need
from tests.factories import radiograph
from tests.integration.listener_harness import AE_TITLE, running_listener


def send(harness, *datasets) -> list[int]:
    return send_datasets("127.0.0.1", harness.port, AE_TITLE, "TESTSCU", list(datasets))


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs as the data folder: a real "No space left on device"."""
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount (tmpfs)")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True)
    need(done.returncode == 0, "permission to mount a tmpfs")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_disk_full_answers_a700_keeps_nothing_and_recovers(tmp_path, small_disk):
    with running_listener(tmp_path, data_dir=small_disk) as harness:
        too_big = radiograph(size=512)  # 512 KiB of pixels
        assert send(harness, too_big) == [0xA700]
        assert harness.files() == [] and harness.rows() == 0, "nothing half-written"
        assert send(harness, radiograph(size=32)) == [0x0000], "room again: stored"
        assert harness.rows() == 1 and len(harness.files()) == 1
        assert harness.stores == [("refused", 0xA700), ("stored", 0x0000)]


def test_database_unavailable_answers_a700_and_removes_the_file(tmp_path):
    from db.session import make_engine, make_session_factory

    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    with running_listener(tmp_path, sessions=make_session_factory(engine)) as harness:
        assert send(harness, radiograph()) == [0xA700]
        assert harness.files() == [], "no file without its row"
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0, "the listener is still up"
    engine.dispose()


def test_missing_or_malformed_uids_are_refused_and_logged_without_phi(tmp_path, caplog):
    no_study = radiograph()
    del no_study.StudyInstanceUID
    bad_series = radiograph()
    bad_series.SeriesInstanceUID = "1.2.3.x4"
    no_pixels = radiograph()
    del no_pixels.PixelData
    with caplog.at_level(logging.INFO), running_listener(tmp_path) as harness:
        assert send(harness, no_study, bad_series, no_pixels) == [0xC220, 0xC220, 0xA900]
        assert harness.files() == [] and harness.rows() == 0
    assert [s for _r, s in harness.stores] == [0xC220, 0xC220, 0xA900]
    # Our own messages (pydicom's and pynetdicom's quote values; serve holds them at ERROR/WARNING).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("dicom"))
    assert "StudyInstanceUID" in text and "Pixel Data" in text
    for phi in ("TEST^PATIENT", "TEST-0001", "ACC00000", str(no_pixels.SOPInstanceUID), "1.2.3.x4"):
        assert phi not in text


def test_a_dataset_truncated_mid_element_answers_c210(tmp_path):
    from tests.factories import write

    path = write(radiograph(size=16), tmp_path / "src")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 16 * 16 * 2 - 3])  # cut inside the Pixel Data header
    with running_listener(tmp_path) as harness:
        assert send(harness, path) == [0xC210]
        assert harness.files() == [] and harness.rows() == 0
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0


def test_a_large_pixel_data_cut_short_answers_a900(tmp_path):
    """Pixel Data too large to be read while checking (it is only skipped) is still measured."""
    from tests.factories import write

    path = write(radiograph(size=512), tmp_path / "src")  # 512 KiB of Pixel Data
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with running_listener(tmp_path) as harness:
        assert send(harness, path) == [0xA900]
        assert harness.files() == [] and harness.rows() == 0


def test_same_bytes_twice_is_one_instance(tmp_path):
    ds = radiograph()
    with running_listener(tmp_path) as harness:
        assert send(harness, ds) == [0]
        assert send(harness, ds) == [0]
        assert harness.rows() == 1 and len(harness.files()) == 1
        assert [r for r, _s in harness.stores] == ["stored", "duplicate"]


def test_different_bytes_are_a_new_revision_and_retriage_the_completed_study(tmp_path):
    first = radiograph(seed=1)
    second = radiograph(seed=2)
    second.StudyInstanceUID, second.SeriesInstanceUID = first.StudyInstanceUID, first.SeriesInstanceUID
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID
    with running_listener(tmp_path) as harness:
        assert send(harness, first) == [0]
        old_file = harness.files()[0]
        old_bytes = old_file.read_bytes()
        with harness.sessions() as session:
            complete_quiet_studies(session, stable_seconds=0)
        assert send(harness, second) == [0]
        assert harness.stores[-1] == ("reopened", 0)
        assert old_file.read_bytes() == old_bytes, "the earlier file is never overwritten"
        assert len(harness.files()) == 2
        with harness.sessions() as session:
            assert len(session.scalars(select(Instance)).all()) == 2
            study = session.scalars(select(Study)).one()
            assert (study.revision, study.status, study.instance_count) == (2, "receiving", 1)
            complete_quiet_studies(session, stable_seconds=0)
            assert [m.revision for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))] == [1, 2]

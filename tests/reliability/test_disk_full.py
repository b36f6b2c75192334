"""A full disk (a small tmpfs as the data folder, mounted by the test as root): images are refused
0xA700 and leave no partial file; a triage caught by it is finished, and refused images taken,
within 30 s of space returning."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time

import pytest

from tests.conftest import need
from tests.e2e.daemon import Daemon
from tests.reliability.harness import report
from tests.reliability.outages import (
    OUT_OF_RESOURCES,
    SUCCESS,
    Records,
    blocking_policy,
    release_policy,
    store_one,
    stored_files,
    study,
    temporary_files,
    wait_final,
)

pytestmark = pytest.mark.reliability


@pytest.fixture
def small_disk(tmp_path):
    need(os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount (tmpfs)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount_point)], capture_output=True,
                          check=False)
    need(done.returncode == 0, "permission to mount a tmpfs")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(folder) -> None:
    """Write zeros until the file system has no byte left."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_refuses_then_recovers(tmp_path, small_disk, request):
    policy = blocking_policy(tmp_path)
    data_dir = small_disk / "data"
    daemon = Daemon(tmp_path / "run", RADTRIAGE_DATA_DIR=str(data_dir), RADTRIAGE_POLICY_FILE=str(policy))
    daemon.data_dir = data_dir
    with daemon:
        records = Records(daemon)
        caught, waiting, refused = (study(seed, 1)[0] for seed in (1, 2, 3))
        assert store_one(daemon.dicom_port, caught) == SUCCESS
        daemon.wait_for(lambda: "triaging" in records.statuses().values(), 60, "the worker blocked mid-triage")
        assert store_one(daemon.dicom_port, waiting) == SUCCESS
        daemon.wait_for(lambda: list(records.statuses().values()).count("queued") == 1, 30, "a study queued")

        files = stored_files(data_dir)
        fill(small_disk)
        status = store_one(daemon.dicom_port, refused)
        partial = len(stored_files(data_dir) - files) + len(temporary_files(data_dir))
        release_policy(policy)  # the blocked triage now meets the full disk
        time.sleep(5.0)
        (small_disk / "filler").unlink()
        freed = time.monotonic()
        assert store_one(daemon.dicom_port, refused) == SUCCESS  # the PACS sends it again
        uids = {str(ds.StudyInstanceUID) for ds in (caught, waiting, refused)}
        wait_final(records, uids, 60)
        recovered = time.monotonic() - freed
        time.sleep(1.0)
        triaged = records.triaged()
        restarts = daemon.health()["components"]["workers"]["supervised"]["triage"]["restarts"]

    report(request, status_when_full=hex(status or 0), partial_files=partial, all_final_after_space_s=recovered,
           triaged=sum(triaged.values()), worker_restarts=restarts)
    assert status == OUT_OF_RESOURCES
    assert partial == 0
    assert recovered <= 30
    assert triaged == {uid: 1 for uid in uids}
    assert restarts == 0, "the watchdog must not kill a worker that waits for the disk"

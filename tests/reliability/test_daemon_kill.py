"""SIGKILL of the whole daemon (serve, its listener processes, workers and sidecars) at three
moments of four concurrent pushes, then a restart: nothing acknowledged is lost, nothing
half-written is visible, and resending completes every study, each revision triaged once."""

from __future__ import annotations

import time

import pytest

from tests.e2e.daemon import Daemon
from tests.reliability.harness import report
from tests.reliability.outages import Records, kill_whole, push_all, stored_files, study, temporary_files, wait_final

pytestmark = pytest.mark.reliability

MOMENTS = (0.3, 1.0, 2.0)  # seconds into the pushes
PUSHES = 4
IMAGES = 60


def test_whole_daemon_killed_mid_push(tmp_path, request):
    folder = tmp_path / "run"
    sent: list[list] = []
    acked: set[str] = set()
    lost, orphans, temporary = [], [], []
    for round_, moment in enumerate(MOMENTS):
        studies = [study(1000 * (round_ + 1) + i, IMAGES) for i in range(PUSHES)]
        sent += studies
        with Daemon(folder) as daemon:
            _check_after_restart(daemon, acked, lost, orphans, temporary)
            pushes = push_all(daemon.dicom_port, studies)
            time.sleep(moment)
            kill_whole(daemon)
            for push in pushes:
                push.join(30)
                acked.update(push.acked)

    with Daemon(folder) as daemon:
        _check_after_restart(daemon, acked, lost, orphans, temporary)
        records = Records(daemon)
        again = [[ds for datasets in sent[i::PUSHES] for ds in datasets] for i in range(PUSHES)]
        statuses = [status for push in push_all(daemon.dicom_port, again) for status in _joined(push)]
        resent = time.monotonic()
        uids = {str(datasets[0].StudyInstanceUID) for datasets in sent}
        wait_final(records, uids, 120)
        all_final = time.monotonic() - resent
        time.sleep(1.0)  # a second delivery, if any, gets its chance to write
        recorded = records.instances()
        triaged, revisions = records.triaged(), records.revisions()

    report(request, kills=len(MOMENTS), pushes=PUSHES, images_sent=len(sent) * IMAGES,
           acknowledged_before_kills=len(acked),
           acknowledged_lost=len(lost), orphan_files=len(orphans), temporary_files=len(temporary),
           all_final_after_resend_s=all_final, triaged_more_than_once_per_revision=sum(
               triaged[uid] > revisions[uid] for uid in uids))
    assert 0 < len(acked) < len(sent) * IMAGES, "the kills did not land mid-push"
    assert lost == [] and orphans == [] and temporary == []
    assert all(status == 0 or 0xB000 <= status < 0xC000 or status < 0x0200 for status in statuses), statuses
    assert {str(ds.SOPInstanceUID) for datasets in sent for ds in datasets} == set(recorded)
    assert {uid: triaged[uid] for uid in uids} == {uid: revisions[uid] for uid in uids}


def _joined(push) -> list[int]:
    push.join(120)
    assert len(push.statuses) == len(push.datasets), "the resend did not finish"
    return push.statuses


def _check_after_restart(daemon: Daemon, acked: set[str], lost: list, orphans: list, temporary: list) -> None:
    """Every acknowledged instance has its row and its file; no file without a row; no temporary file
    once the daemon's start-up check has judged what the crash left (files older than 5 s)."""
    deadline = time.monotonic() + 8.0
    while True:
        recorded = Records(daemon).instances()
        files = stored_files(daemon.data_dir)
        left = files - set(recorded.values()) or temporary_files(daemon.data_dir)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    lost += sorted(acked - set(recorded))
    lost += [uid for uid in acked if uid in recorded and recorded[uid] not in files]
    orphans += sorted(files - set(recorded.values()))
    temporary += temporary_files(daemon.data_dir)

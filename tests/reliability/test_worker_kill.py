"""Worker SIGKILL mid-triage, five times: every study triaged exactly once, each claim re-driven
within seconds of its worker dying, with the default sweep settings."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e.daemon import Daemon
from tests.reliability.harness import report
from tests.reliability.outages import SUCCESS, Records, blocking_policy, push_all, release_policy, study, wait_final

pytestmark = pytest.mark.reliability

KILLS = 5


def test_five_worker_kills_mid_triage(tmp_path, request):
    # The policy file is a FIFO: each new worker blocks reading it inside its first triage (the
    # study claimed, nothing recorded) until the test swaps the real file in.
    fifo = blocking_policy(tmp_path)
    with Daemon(tmp_path / "run", RADTRIAGE_POLICY_FILE=str(fifo)) as daemon:
        records = Records(daemon)
        pushes = push_all(daemon.dicom_port, [study(seed, 1) for seed in range(1, KILLS + 2)])
        for push in pushes:
            push.join(60)
        assert all(push.statuses == [SUCCESS] for push in pushes)
        uids = {str(push.datasets[0].StudyInstanceUID) for push in pushes}

        redrive_seconds = []
        for _ in range(KILLS):
            uid = _wait_triaging(records, daemon)
            before = records.redriven()
            pid = daemon.health()["components"]["workers"]["supervised"]["triage"]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            daemon.wait_for(lambda before=before: records.redriven() > before, 60, f"study {uid} re-driven after the kill")
            redrive_seconds.append(time.monotonic() - killed)
        released = time.monotonic()
        release_policy(fifo)
        wait_final(records, uids, 120)
        all_final = time.monotonic() - released
        time.sleep(1.0)  # a second delivery, if any, gets its chance to write
        triaged = records.triaged()
        restarts = daemon.health()["components"]["workers"]["supervised"]["triage"]["restarts"]

    report(request, kills=KILLS, redrive_max_s=max(redrive_seconds), redrive_median_s=sorted(redrive_seconds)[2],
           all_final_after_release_s=all_final, triaged_twice=sum(n > 1 for n in triaged.values()),
           worker_restarts=restarts)
    assert triaged == {uid: 1 for uid in uids}
    assert max(redrive_seconds) <= 30, redrive_seconds
    assert restarts >= KILLS


def _wait_triaging(records: Records, daemon: Daemon) -> str:
    found: list[str] = []

    def triaging() -> bool:
        found[:] = [uid for uid, status in records.statuses().items() if status == "triaging"]
        return bool(found)

    daemon.wait_for(triaging, 60, "a study being triaged")
    return found[0]


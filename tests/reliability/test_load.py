"""Load: 16 concurrent associations of 150 instances each, from real SCUs, into ``radtriage serve``.

Half the associations are DCMTK ``storescu`` processes, half pynetdicom senders (the kind a
hospital's own scripts use). Every instance sent is acknowledged, stored as one file and
recorded as one row, and every study reaches a final state on the worklist. Printed:
instances per second, and the C-STORE latency p50/p99 the pynetdicom senders saw (storescu
does not report per-instance times).
"""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from tests.e2e.daemon import Daemon
from tests.factories import DX, radiograph, write
from tests.reliability.harness import percentile, report

pytestmark = pytest.mark.reliability

ASSOCIATIONS, PER_ASSOCIATION = 16, 150
# A C-STORE answered later than this counts as a stall (pynetdicom's default DIMSE timeout is 30 s).
STALL_SECONDS = 10.0


def pynetdicom_push(port: int, datasets, latencies: list, statuses: list) -> None:
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(DX, "1.2.840.10008.1.2.1")
    ae.acse_timeout = ae.network_timeout = 30
    ae.dimse_timeout = 30
    assoc = ae.associate("127.0.0.1", port, ae_title="RADTRIAGE")
    assert assoc.is_established
    try:
        for ds in datasets:
            started = time.monotonic()
            response = assoc.send_c_store(ds)
            latencies.append(time.monotonic() - started)
            statuses.append(int(response.Status) if "Status" in response else None)
    finally:
        assoc.release()


def storescu_push(port: int, files, acknowledged: list) -> None:
    done = subprocess.run(["storescu", "-v", "-aet", "DCMTKSCU", "-aec", "RADTRIAGE", "127.0.0.1", str(port),
                           *map(str, files)], capture_output=True, text=True, timeout=300, check=False)
    acknowledged.append(done.stdout.count("Received Store Response (Success)")
                        + done.stderr.count("Received Store Response (Success)"))


def test_sixteen_associations_of_150_instances(tmp_path, request, dcmtk):
    studies = [generate_uid() for _ in range(ASSOCIATIONS)]
    batches = [[radiograph(study_uid=studies[a], size=48, seed=a * 1000 + i) for i in range(PER_ASSOCIATION)]
               for a in range(ASSOCIATIONS)]
    files = []
    for a in range(0, ASSOCIATIONS, 2):  # even associations: storescu from files
        folder = tmp_path / f"push{a}"
        folder.mkdir()
        files.append([write(ds, folder) for ds in batches[a]])
    latencies: list[float] = []
    statuses: list = []
    acknowledged: list[int] = []
    # All 16 come from this one host: as from one PACS forwarding in parallel, which needs the
    # per-host cap (half the association limit by default) raised to the limit.
    with Daemon(tmp_path / "daemon", RADTRIAGE_STABLE_SECONDS="2",
                RADTRIAGE_DICOM_MAX_ASSOCIATIONS_PER_HOST=str(ASSOCIATIONS)) as daemon:
        threads = []
        for a in range(ASSOCIATIONS):
            if a % 2:
                threads.append(threading.Thread(target=pynetdicom_push,
                                                args=(daemon.dicom_port, batches[a], latencies, statuses)))
            else:
                threads.append(threading.Thread(target=storescu_push,
                                                args=(daemon.dicom_port, files[a // 2], acknowledged)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        push_seconds = time.monotonic() - started
        sent = ASSOCIATIONS * PER_ASSOCIATION
        acked = sum(acknowledged) + statuses.count(0)
        stored = sum(1 for _ in (daemon.data_dir / "objects").rglob("*.dcm"))
        partial = sum(1 for _ in (daemon.data_dir / "objects").rglob(".incoming-*"))
        with sqlite3.connect(daemon.data_dir / "radtriage.sqlite3") as db:
            rows = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
        items = daemon.wait_triaged(ASSOCIATIONS, timeout=240)
        final_seconds = time.monotonic() - started
    stalls = [seconds for seconds in latencies if seconds > STALL_SECONDS]
    report(request, sent=sent, acknowledged=acked, files=stored, rows=rows, partial_files=partial,
           studies_final=len(items), push_s=round(push_seconds, 1), instances_per_s=round(sent / push_seconds, 1),
           all_final_s=round(final_seconds, 1), pynetdicom_c_stores=len(latencies),
           c_store_p50_ms=round(percentile(latencies, 0.5) * 1000, 1),
           c_store_p99_ms=round(percentile(latencies, 0.99) * 1000, 1),
           c_store_max_ms=round(max(latencies) * 1000, 1), stalls=len(stalls))
    assert sent == acked == stored == rows
    assert partial == 0
    assert {item["study_instance_uid"] for item in items} == set(studies)
    assert not stalls, f"{len(stalls)} C-STORE responses took longer than {STALL_SECONDS} s"

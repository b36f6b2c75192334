"""No patient data leaks: a known name and ID pushed through the whole pipeline appear in no log
line, no metric and no response given without signing in.

The patient's images go the whole way (stored, triaged, on the worklist), and copies of them
that are refused (a missing UID, impossible pixel attributes, a byte order that lies) or
answered as duplicates carry the same name and ID, since refusals are where values tend to
be quoted.
"""

from __future__ import annotations

import sqlite3
import time
import urllib.error
import urllib.request

import pytest
from pydicom.uid import ExplicitVRBigEndian, generate_uid

from tests.e2e.daemon import Daemon
from tests.factories import radiograph, write
from tests.reliability.harness import report

pytestmark = pytest.mark.reliability

NAME, PATIENT_ID = "QUILLON^ZEBRAFISHA", "PHI7731XK"
# Each part on its own too: a log might print the family name alone, or the ID in another case.
NEEDLES = ("QUILLON", "ZEBRAFISHA", "PHI7731XK")
TOKEN = "reliability-phi-token"
UNAUTHENTICATED = ("/", "/healthz", "/metrics", "/api/worklist", "/api/me", "/api/events", "/api/deliveries",
                   "/openapi.json", "/docs")


def patient(study: str, seed: int, **changes):
    ds = radiograph(study_uid=study, size=32, seed=seed)
    ds.PatientName, ds.PatientID = NAME, PATIENT_ID
    ds.PatientBirthDate = "19610214"
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def test_patient_data_appears_in_no_log_metric_or_anonymous_response(tmp_path, request, dcmtk):
    study = generate_uid()
    good = [patient(study, seed) for seed in range(3)]
    refused = [patient(study, 10, StudyInstanceUID=""), patient(study, 11, BitsAllocated=7),
               patient(study, 12, SOPInstanceUID="not.a-uid")]
    folder = tmp_path / "push"
    folder.mkdir()
    files = [write(ds, folder) for ds in good + refused]
    lying_path = write(patient(study, 13), folder, "lying.dcm")
    # The meta claims big endian; the dataset stays little endian.
    lying_path.write_bytes(lying_path.read_bytes().replace(b"1.2.840.10008.1.2.1\x00", ExplicitVRBigEndian.encode() + b"\x00", 1))
    with Daemon(tmp_path / "daemon", RADTRIAGE_HTTP_TOKEN=TOKEN, RADTRIAGE_LOG_LEVEL="DEBUG") as daemon:
        daemon.dcmsend(*files[:3])
        daemon.dcmsend(*files[:3])  # duplicates
        for path in [*files[3:], lying_path]:
            # Refusals: dcmsend exits non-zero; what matters is what the daemon wrote about them.
            try:
                daemon.dcmsend(path)
            except Exception:  # noqa: BLE001, S110 - a refused instance makes dcmsend fail
                pass
        deadline = time.monotonic() + 120
        while True:
            with sqlite3.connect(daemon.data_dir / "radtriage.sqlite3") as db:
                status = db.execute("SELECT status FROM studies WHERE study_instance_uid = ?", (study,)).fetchone()
            if status and status[0] in ("triaged", "failed"):
                break
            assert time.monotonic() < deadline, f"study not final: {status}"
            time.sleep(0.5)
        signed_in = fetch(daemon.http_port, f"/api/studies/{study}", TOKEN)[1]
        anonymous = {path: fetch(daemon.http_port, path) for path in UNAUTHENTICATED}
        metrics = fetch(daemon.http_port, "/metrics", TOKEN)[1]
        log = daemon.log()
    # The test can fail: a signed-in reader does see the patient (the study detail).
    assert any(needle in signed_in.upper() for needle in NEEDLES)
    leaks = {where: [n for n in NEEDLES if n in text.upper()]
             for where, text in [("log", log), ("metrics", metrics)]
             + [(f"anonymous {path} ({code})", body) for path, (code, body) in anonymous.items()]}
    leaks = {where: found for where, found in leaks.items() if found}
    report(request, log_lines=len(log.splitlines()), metric_lines=len(metrics.splitlines()),
           anonymous_routes={path: code for path, (code, _) in anonymous.items()}, leaks=leaks)
    assert not leaks

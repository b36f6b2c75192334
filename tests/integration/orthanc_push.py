"""Run inside a private network namespace: Orthanc pushes studies to ``radtriage serve``.

``python -m tests.integration.orthanc_push FOLDER FILE...`` (under ``unshare -n``) brings up
loopback, starts Orthanc and the daemon there, uploads FILEs to Orthanc, asks Orthanc to
store their studies to radtriage, waits for the worklist, and prints one ``RESULT {json}``
line. Orthanc cannot bind to loopback only, hence the private network namespace.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.e2e.daemon import Daemon, free_port

ORTHANC_AET = "ORTHANC"


def _http(url: str, data: bytes | None = None, timeout: float = 60) -> dict | list:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _die_with_parent() -> None:
    # If this helper is killed (a test timeout), Orthanc must not outlive it in the namespace.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _start_orthanc(folder: Path, dicom_port: int, radtriage_port: int) -> tuple[subprocess.Popen, str]:
    http_port = free_port()
    config = {
        "Name": "radtriage-test", "StorageDirectory": str(folder / "orthanc-db"), "IndexDirectory": str(folder / "orthanc-db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": ORTHANC_AET, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [],
        "DicomModalities": {"radtriage": ["RADTRIAGE", "127.0.0.1", radtriage_port]},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen(["Orthanc", str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _http(f"{base}/system", timeout=2)
            return proc, base
        except OSError:
            assert proc.poll() is None, (folder / "orthanc.log").read_text(errors="replace")
            time.sleep(0.1)
    raise TimeoutError("Orthanc did not answer")


def main(folder: Path, files: list[Path]) -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = {"RADTRIAGE_DICOM_ALLOWED_AES": f"{ORTHANC_AET}@127.0.0.1"}
    with Daemon(folder, **env) as daemon:
        orthanc, base = _start_orthanc(folder, free_port(), daemon.dicom_port)
        try:
            studies = sorted({_http(f"{base}/instances", f.read_bytes())["ParentStudy"] for f in files})
            answer = _http(f"{base}/modalities/radtriage/store",
                           json.dumps({"Resources": studies, "Synchronous": True}).encode())
            items = daemon.wait_triaged(len(studies), timeout=60)
            stored = [[uid, ts] for uid, (ts, _data) in daemon.stored().items()]
        finally:
            orthanc.terminate()
            orthanc.wait(30)
    return {"store": answer, "worklist": items, "stored": stored}


if __name__ == "__main__":
    result = main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
    print("RESULT " + json.dumps(result), flush=True)

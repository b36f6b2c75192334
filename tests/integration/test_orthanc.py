"""Orthanc as the PACS: it pushes studies with ``/modalities/…/store`` and they reach the worklist.

Orthanc and the daemon run together inside a private network namespace (``unshare -n``),
so nothing listens on a real interface.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pydicom
import pytest

from tests.conftest import REPO, need

pytestmark = pytest.mark.e2e


def _namespaces_work() -> bool:
    if not (shutil.which("unshare") and shutil.which("ip")):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


def test_orthanc_pushes_a_study_to_the_worklist(tmp_path, samples):
    need(shutil.which("Orthanc") is not None, "Orthanc (Debian package orthanc)")
    need(_namespaces_work(), "unshare -n (root) and iproute2")
    files = [samples / "chest" / "RG1_J2KI.dcm", samples / "chest" / "966_fixed.dcm"]
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.integration.orthanc_push", str(tmp_path), *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[0].removeprefix("RESULT "))

    assert result["store"]["InstancesCount"] == len(files) and result["store"]["FailedInstancesCount"] == 0
    sent = {str(ds.StudyInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    assert {item["study_instance_uid"] for item in result["worklist"]} == set(sent)
    assert all(item["status"] == "triaged" and item["instances"] == 1 for item in result["worklist"])
    stored = dict(result["stored"])
    for ds in sent.values():
        assert stored[str(ds.SOPInstanceUID)] == ds.file_meta.TransferSyntaxUID, "Orthanc's syntax is kept"

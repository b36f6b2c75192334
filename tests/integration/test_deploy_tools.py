"""The deployment files run by the real tools: promtool checks Prometheus's, Orthanc starts with its demo config."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import need
from tests.deploy_files import DEPLOY, ORTHANC_CONFIG, orthanc_config
from tests.e2e.daemon import free_port


def test_promtool_accepts_config_and_alert_unit_tests_pass():
    need(shutil.which("promtool") is not None, "promtool (apt install prometheus)")
    folder = DEPLOY / "prometheus"
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_orthanc_starts_with_the_demo_config(tmp_path):
    """The real Orthanc loads the file, asks for a login and knows the radtriage modality."""
    need(shutil.which("Orthanc") is not None, "Orthanc")
    http_port, dicom_port = free_port(), free_port()
    text = ORTHANC_CONFIG.read_text().replace("/var/lib/orthanc/db", str(tmp_path / "db"))
    text = text.replace('"HttpPort": 8042', f'"HttpPort": {http_port}').replace('"DicomPort": 4242', f'"DicomPort": {dicom_port}')
    (tmp_path / "orthanc.json").write_text(text)
    user, password = next(iter(orthanc_config()["RegisteredUsers"].items()))
    auth = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    auth.add_password(None, f"http://127.0.0.1:{http_port}/", user, password)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(auth))
    process = subprocess.Popen(["Orthanc", str(tmp_path / "orthanc.json")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                modalities = json.load(opener.open(f"http://127.0.0.1:{http_port}/modalities?expand", timeout=2))
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stderr.read().decode(errors="replace")[-2000:]
                assert time.monotonic() < deadline, "Orthanc did not answer within 15 s"
                time.sleep(0.1)
        assert modalities["radtriage"]["AET"] == "RADTRIAGE"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/system", timeout=2)
        assert refused.value.code == 401
    finally:
        process.terminate()
        process.wait(10)

"""The production processes as docker-compose.yml runs them: each app service's own command
(``radtriage listen``, ``radtriage api``, two ``radtriage worker``s) started with its compose
environment (only ports, paths, database and broker made local), a study pushed from an
allowed AE title, and each process's /metrics saying its part of the run, once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.daemon import free_port
from tests.factories import radiograph, write

pytestmark = pytest.mark.e2e

APP_SERVICES = ("radtriage", "api", "worker-triage", "worker-draft")
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def compose_services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def service_env(service: dict) -> dict[str, str]:
    """The service's environment with compose's defaults filled in (nothing set in .env)."""
    return {k: _INTERPOLATION.sub(lambda m: m.group(2) or "", str(v)) for k, v in service["environment"].items()}


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.log_path = folder / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "radtriage", *command], env=env, cwd=folder,
                                         stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def sample(text: str, line_start: str) -> float | None:
    found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
    return float(found[0].split()[-1]) if found else None


def test_each_compose_service_runs_its_command_and_serves_its_own_metrics(tmp_path, dcmtk):
    services = compose_services()
    http_port, dicom_port = free_port(), free_port()
    local = {
        "RADTRIAGE_DATA_DIR": str(tmp_path / "data"),
        "RADTRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'radtriage.sqlite3'}",
        "RADTRIAGE_CXR_FOUNDATION_DIR": str(tmp_path / "no-models"),
        "RADTRIAGE_MEDGEMMA_MODEL": str(tmp_path / "no-medgemma"),
        "RADTRIAGE_HTTP_PORT": str(http_port),
        "RADTRIAGE_DICOM_PORT": str(dicom_port),
        "RADTRIAGE_STABLE_SECONDS": "1",
    }
    metrics_ports: dict[str, int] = {}
    processes: list[Process] = []
    try:
        for name in APP_SERVICES:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RADTRIAGE_")}
            env.update(service_env(services[name]))
            env.pop("RADTRIAGE_BROKER_URL")  # the embedded broker: a shared folder instead of Redis
            env.update(local)
            command = list(services[name]["command"])
            if "--metrics-port" in command:
                metrics_ports[name] = free_port()
                command[command.index("--metrics-port") + 1] = str(metrics_ports[name])
            processes.append(Process(name, command, env, tmp_path))
            if name == "radtriage":  # the others wait for it (depends_on: healthy): it migrates
                wait(processes, lambda: fetch(f"http://127.0.0.1:{metrics_ports['radtriage']}/metrics"), "listen")
        listen_url = f"http://127.0.0.1:{metrics_ports['radtriage']}/metrics"
        api_url = f"http://127.0.0.1:{http_port}"
        wait(processes, lambda: fetch(f"{api_url}/healthz"), "api")
        for name in ("worker-triage", "worker-draft"):
            wait(processes, lambda n=name: fetch(f"http://127.0.0.1:{metrics_ports[n]}/metrics"), name)
        wait(processes, lambda: json.loads(fetch(f"{api_url}/healthz"))["components"]["workers"]["alive_by_queue"]
             .get("triage"), "a triage worker's heartbeat")

        # The demo PACS's AE title is the one the compose file allows.
        ds = radiograph(seed=3)
        subprocess.run(["storescu", "-aet", "ORTHANC", "-aec", "RADTRIAGE", "127.0.0.1", str(dicom_port),
                        str(write(ds, tmp_path / "push"))], check=True, capture_output=True, timeout=60)

        def triaged():
            items = json.loads(fetch(f"{api_url}/api/worklist") or "{}").get("items", [])
            return items if items and items[0]["status"] == "triaged" else None

        priority = wait(processes, triaged, "the study triaged")[0]["priority"]
        last_stage = 'radtriage_study_stage_seconds_count{stage="last_image_to_priority"}'
        wait(processes, lambda: sample(fetch(listen_url) or "", last_stage), "the listener to see the study's stages")
        listen = fetch(listen_url)
        api = fetch(f"{api_url}/metrics")
        worker_url = f"http://127.0.0.1:{metrics_ports['worker-triage']}/metrics"

        def worker_counted():
            text = fetch(worker_url) or ""
            return text if sample(text, 'radtriage_triage_tasks_total{outcome="triaged"}') else None

        triage_worker = wait(processes, worker_counted, "the triage worker's count")
        draft_worker = fetch(f"http://127.0.0.1:{metrics_ports['worker-draft']}/metrics")
    finally:
        for process in processes:
            process.stop()

    # The listener process: DICOM counters and per-study stage times, once.
    assert sample(listen, 'radtriage_dicom_store_requests_total{result="stored",status="0x0000"}') == 1
    for stage in ("first_to_last_image", "last_image_to_complete", "complete_to_triaged", "last_image_to_priority"):
        assert sample(listen, f'radtriage_study_stage_seconds_count{{stage="{stage}"}}') == 1, stage
    assert sample(listen, "radtriage_data_disk_free_bytes") > 0
    assert "radtriage_studies{" not in listen, "the worklist gauges are the API process's"
    # The API process: the worklist's gauges, not the listener's counters.
    assert sample(api, 'radtriage_studies{status="triaged"}') == 1
    assert sample(api, f'radtriage_oldest_unread_seconds{{priority="{priority}"}}') > 0
    # Its own counters start at 0 and stay there: a sum over the processes counts each event once.
    assert sample(api, 'radtriage_dicom_store_requests_total{result="stored",status="0x0000"}') == 0
    assert sample(api, 'radtriage_study_stage_seconds_count{stage="last_image_to_priority"}') == 0
    # The prefork worker: its child's task counted, the model it runs reported (no weights here).
    assert sample(triage_worker, 'radtriage_triage_tasks_total{outcome="triaged"}') == 1
    assert sample(triage_worker, 'radtriage_task_seconds_count{outcome="triaged",task="triage"}') == 1
    assert sample(triage_worker, 'radtriage_model_loaded{model="cxr-foundation"}') == 0
    assert sample(draft_worker, 'radtriage_model_loaded{model="medgemma"}') == 0
    assert sample(draft_worker, 'radtriage_triage_tasks_total{outcome="triaged"}') == 0


def wait(processes: list[Process], predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.proc.poll() is None, f"{process.name} exited:\n{process.log()[-4000:]}"
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    logs = "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in processes)
    raise AssertionError(f"timed out waiting for {what}\n{logs}")

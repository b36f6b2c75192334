"""A real Prometheus (Debian's ``prometheus``) scrapes ``radtriage serve`` while the README's own
``dcmsend`` command pushes the shared chest samples: every Grafana query and every alert
expression evaluates through Prometheus's HTTP API and finds data, the STAT alert fires, the
counts equal what was pushed and the per-study histograms count each triaged study once.
The same run writes JSON logs in which one study is followed across processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pydicom
import pytest
import yaml

from tests.conftest import REPO, need
from tests.deploy_files import DEPLOY
from tests.e2e.daemon import Daemon, free_port
from tests.factories import radiograph, write
from tests.integration.http_recorder import Recorder, Reply

pytestmark = pytest.mark.e2e

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "radtriage.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\b(?:radtriage_[a-z0-9_]+|up)\b(?!\s*\()")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def readme_dcmsend() -> str:
    """The README's dcmsend example, as a user would copy it."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("dcmsend "):
            return line.split("#", 1)[0].strip()
    raise AssertionError("the README has no dcmsend example")


class Prometheus:
    """``prometheus`` on a free port, scraping ``target`` every second with the shipped alert rules."""

    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(ALERTS)]
        # The shipped jobs with the test's daemon as the one-box target (serve exports every metric).
        config["scrape_configs"] = [{"job_name": "radtriage", "static_configs": [{"targets": [target]}]}]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = open(folder / "prometheus.log", "wb")  # noqa: SIM115 - open while prometheus runs
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def ready(self) -> bool:
        try:
            return bool(self.query('up{job="radtriage"} == 1'))
        except OSError:
            assert self.proc.poll() is None, "prometheus exited"
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m")) for p in panels for t in p.get("targets", [])]


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def metric_value(text: str, sample: str) -> float:
    """The value of one exposed sample (name with its labels, as in the exposition)."""
    found = [line for line in text.splitlines() if line.startswith(sample + " ")]
    assert len(found) == 1, f"{sample}: {found}"
    return float(found[0].split()[-1])


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.split()[-1])
    return total


@pytest.fixture
def run(tmp_path, samples, dcmtk):
    need(shutil.which("prometheus") is not None, "prometheus (apt install prometheus)")
    with Recorder(lambda _request: Reply(200)) as webhook:
        destinations = [{"name": "glue", "kind": "webhook", "receives": ["result"], "url": webhook.url,
                         "secret": "test-secret"}]
        with Daemon(tmp_path / "serve", RADTRIAGE_STAT_READ_LIMIT_MINUTES="0.01", RADTRIAGE_LOG_FORMAT="json",
                    RADTRIAGE_DESTINATIONS=json.dumps(destinations)) as daemon:
            prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{daemon.http_port}")
            try:
                daemon.wait_for(prometheus.ready, 60, "prometheus to scrape the daemon")
                yield daemon, prometheus, webhook
            finally:
                prometheus.close()


def test_prometheus_finds_every_dashboard_query_and_alert_in_a_real_run(run, samples, tmp_path):
    daemon, prometheus, webhook = run
    # The README's command, word for word but for the port, on a folder of chest images.
    pushed = tmp_path / "push"
    pushed.mkdir()
    (pushed / "study").symlink_to(samples / "chest")
    command = readme_dcmsend().replace(" 11112 ", f" {daemon.dicom_port} ")
    sent = subprocess.run(command, shell=True, check=False, cwd=pushed, capture_output=True, text=True, timeout=120)
    assert sent.returncode == 0, sent.stderr
    files = sorted((samples / "chest").glob("*.dcm"))
    stat = radiograph(priority="STAT", seed=7)
    daemon.storescu(write(stat, tmp_path / "stat"))
    studies = {str(pydicom.dcmread(f, force=True, stop_before_pixels=True).StudyInstanceUID) for f in files}
    studies.add(str(stat.StudyInstanceUID))
    items = daemon.wait_triaged(len(studies))
    triaged = sum(item["status"] == "triaged" for item in items)
    assert triaged, items

    # Counts equal what was pushed; the per-study histograms count each triaged study once.
    def settled():
        text = daemon.get("/metrics")
        return text if metric_sum(text, "radtriage_study_stage_seconds_count", stage="last_image_to_priority") == triaged else None

    text = daemon.wait_for(settled, 30, "the stage histograms to see every triaged study")
    assert metric_sum(text, "radtriage_dicom_store_requests_total") == len(files) + 1, "every file the README sends"
    assert metric_value(text, "radtriage_dicom_store_seconds_count") == len(files) + 1
    assert metric_value(text, "radtriage_studies_completed_total") == len(studies)
    assert metric_value(text, 'radtriage_triage_tasks_total{outcome="triaged"}') == triaged
    assert metric_value(text, 'radtriage_task_seconds_count{outcome="triaged",task="triage"}') == triaged
    for stage in ("first_to_last_image", "last_image_to_complete", "complete_to_triaged", "last_image_to_priority"):
        assert metric_value(text, f'radtriage_study_stage_seconds_count{{stage="{stage}"}}') == triaged, stage
    assert metric_value(text, 'radtriage_oldest_unread_seconds{priority="STAT"}') > 0

    # Prometheus has scraped the finished run and evaluated the rules on it.
    daemon.wait_for(lambda: prometheus.query(f'radtriage_triage_tasks_total{{outcome="triaged"}} == {triaged}'),
                    30, "prometheus to scrape the finished run")
    daemon.wait_for(lambda: webhook.requests and prometheus.query("radtriage_triaged_to_delivered_seconds_count > 0"),
                    60, "a delivery to reach the webhook and the scrape")
    time.sleep(3)  # a few more scrapes, so every rate has two samples of the final counts
    empty = [f"{title}: {expr}" for title, expr in dashboard_queries() if not prometheus.query(expr)]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    for rule in alert_rules():
        prometheus.query(rule["expr"])  # evaluates without error
        names = set(_METRIC.findall(_QUOTED.sub('""', rule["expr"])))
        missing = [name for name in names if not prometheus.query(name)]
        assert not missing, f"{rule['alert']}: no series for {missing}"
    assert prometheus.query(next(r["expr"] for r in alert_rules() if r["alert"] == "RadtriageStatStudyUnread"))

    def stat_alert():
        alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "RadtriageStatStudyUnread" and a["state"] == "firing"]

    firing = daemon.wait_for(stat_alert, 30, "RadtriageStatStudyUnread to fire")
    assert firing[0]["labels"]["priority"] == "STAT"
    rules = prometheus.get("/api/v1/rules")["data"]["groups"]
    assert all(rule["health"] == "ok" for group in rules for rule in group["rules"]), rules

    # JSON logs: every line parses; one study is followed from its completion to its triage
    # in another process, by its internal id only.
    lines = [json.loads(line) for line in daemon.log().splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    triaged_lines = [line for line in lines if line["logger"] == "worker.tasks.triage" and "study_id" in line]
    assert triaged_lines, "the worker's lines name their study"
    study = triaged_lines[0]["study_id"]
    about = [line for line in lines if line.get("study_id") == study or study in line.get("study_ids", [])]
    assert len({line["process"] for line in about}) >= 2, about
    assert str(stat.PatientName) not in daemon.log() and str(stat.PatientID) not in daemon.log()
    # Inside serve the supervised worker is quiet: no Celery banner, no superuser warning.
    assert "[queues]" not in daemon.log() and "superuser privileges" not in daemon.log()
    assert all(line.startswith("{") for line in daemon.log().splitlines() if line.strip()), "only JSON lines"


"""The deployment files agree with the code: settings, CLI options, metric names, configs."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re

import click
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client.metrics import MetricWrapperBase

from common import StudyStatus
from radtriage import metrics
from radtriage.cli import main
from radtriage.settings import Settings
from tests.conftest import REPO
from tests.deploy_files import DEPLOY, orthanc_config

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.gpu"]
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "radtriage.json"
APP_SERVICES = ("radtriage", "api", "worker-triage", "worker-draft")

_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
_SETTING_VAR = re.compile(r"\bRADTRIAGE_[A-Z0-9_]+\b")
# Variables with the prefix that are not settings: the test switch and the config-file path.
_NOT_SETTINGS = {"RADTRIAGE_CONFIG", "RADTRIAGE_TEST_REQUIRE_SERVICES"}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_RADTRIAGE_METRIC = re.compile(r"\bradtriage_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(radtriage_[a-z0-9_]+)\{([^}]*)\}")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


# -- helpers ----------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: every placeholder takes its default."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")


def _service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: _interpolate(str(value)) for key, value in env.items()}


def _setting_vars(text: str) -> set[str]:
    return set(_SETTING_VAR.findall(text)) - _NOT_SETTINGS


def _setting_env_names() -> set[str]:
    return {f"RADTRIAGE_{name.upper()}" for name in Settings.model_fields}


def _metric_modules() -> list:
    """radtriage.metrics, and the deliveries' metrics where that module exists."""
    modules = [metrics]
    if importlib.util.find_spec("radtriage.metrics_deliveries") is not None:
        modules.append(importlib.import_module("radtriage.metrics_deliveries"))
    return modules


def _code_metrics() -> dict[str, frozenset[str]]:
    """Exposed sample name -> label names, from the metrics objects the code defines."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: dict[str, frozenset[str]] = {}
    for obj in [value for module in _metric_modules() for value in vars(module).values()]:
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = frozenset(obj._labelnames)
        for family in obj.describe():
            for suffix in suffixes[family.type]:
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def _serve_gauges(tmp_path, monkeypatch) -> dict[str, frozenset[str]]:
    """Gauge name -> label names, read from what ``Daemon.render_metrics`` hands the collector."""
    from db.session import make_engine, make_session_factory, migrate
    from radtriage.serve import Daemon

    engine = make_engine(f"sqlite:///{tmp_path / 'gauges.sqlite3'}")
    migrate(engine)
    readers = []
    monkeypatch.setattr(metrics, "GaugeCollector", lambda read: readers.append(read) or read)
    monkeypatch.setattr(metrics, "render", lambda extra=None: (b"", "text/plain"))
    daemon = Daemon(Settings(data_dir=tmp_path))
    daemon.sessions = make_session_factory(engine)
    daemon.reads = make_session_factory(engine, readonly=True)
    daemon.render_metrics()
    engine.dispose()
    assert readers, "Daemon.render_metrics no longer passes a reader to metrics.GaugeCollector"
    return {name: frozenset([label] if label else []) for read in readers for name, (_h, label, _v) in read().items()}


@pytest.fixture(scope="module")
def known_metrics(tmp_path_factory) -> dict[str, frozenset[str]]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        gauges = _serve_gauges(tmp_path_factory.mktemp("gauges"), monkeypatch)
    return {**_code_metrics(), **gauges, "up": frozenset({"job", "instance"})}


def _check_promql(expr: str, known: dict[str, frozenset[str]], where: str) -> list[str]:
    """Problems with the radtriage metric names and label names that ``expr`` uses."""
    problems = []
    unquoted = _QUOTED.sub('""', expr)
    for name in set(_RADTRIAGE_METRIC.findall(unquoted)):
        if name not in known:
            problems.append(f"{where}: unknown metric {name}")
    for name, matchers in _SELECTOR.findall(expr):
        for matcher in filter(None, (m.strip() for m in _QUOTED.sub('""', matchers).split(","))):
            label = re.split(r"[=!~]", matcher, maxsplit=1)[0].strip()
            if name in known and label not in known[name] | {"job", "instance"}:
                problems.append(f"{where}: {name} has no label {label!r}")
    for match in re.finditer(r'radtriage_studies\{[^}]*status=~?"([^"]*)"', expr):
        valid = {v for k, v in vars(StudyStatus).items() if k.isupper() and isinstance(v, str)}
        for status in match.group(1).split("|"):
            if status not in valid:
                problems.append(f"{where}: radtriage_studies has no status {status!r}")
    every_label = set().union(*known.values()) | {"job", "instance"}
    for group in _BY.findall(unquoted):
        for label in filter(None, (g.strip() for g in group.split(","))):
            if label not in every_label:
                problems.append(f"{where}: no metric has label {label!r}")
    return problems


def _alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


# -- docker-compose.yml -------------------------------------------------------------------


def test_compose_has_the_services_and_wiring_of_the_production_stack():
    services = _compose()["services"]
    assert {"postgres", "redis", "radtriage", "worker-triage", "worker-draft", "prometheus", "grafana",
            "orthanc"} <= set(services)
    for name in ("postgres", "redis", "radtriage"):
        assert "healthcheck" in services[name], f"{name} needs a healthcheck for depends_on"
    assert services["worker-draft"]["profiles"] == ["gpu"]
    devices = services["worker-draft"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["orthanc"]["profiles"] == ["demo"]
    # Listener and workers must see the same files, and the weights read-only.
    for name in APP_SERVICES:
        volumes = services[name]["volumes"]
        assert "radtriage-data:/data" in volumes
        assert any(v.endswith(":/models:ro") for v in volumes), f"{name} must mount /models read-only"
    assert any(str(p).endswith("11112:11112") for p in services["radtriage"]["ports"])
    assert any(str(p).endswith("8080:8080") for p in services["api"]["ports"])
    assert "healthcheck" in services["api"]


def test_compose_runs_the_separate_processes_not_serve():
    """Production: one listener, the API and workers, each its own process with its own /metrics."""
    services = _compose()["services"]
    assert services["radtriage"]["command"][0] == "listen" and "--metrics-port" in services["radtriage"]["command"]
    assert services["api"]["command"] == ["api"]
    for name in ("worker-triage", "worker-draft"):
        assert services[name]["command"][0] == "worker" and "--metrics-port" in services[name]["command"]
    assert not any(service.get("command", [None])[0] == "serve" for service in services.values())
    # Prometheus scrapes each of them where the compose file serves its metrics.
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    targets = {job["job_name"]: [t for c in job.get("static_configs", []) for t in c["targets"]] for job in scrape}
    listen_port = services["radtriage"]["command"][services["radtriage"]["command"].index("--metrics-port") + 1]
    assert targets["radtriage-listener"] == [f"radtriage:{listen_port}"]
    assert targets["radtriage"] == [f"api:{Settings.model_fields['http_port'].default}"]


def test_compose_app_environments_build_valid_settings(monkeypatch):
    """Each app container's environment (defaults interpolated) is accepted by Settings."""
    services = _compose()["services"]
    for name in APP_SERVICES:
        env = _service_env(services[name])
        for key in [k for k in os.environ if k.startswith("RADTRIAGE_")]:
            monkeypatch.delenv(key)
        unknown = _setting_vars(" ".join(env)) - _setting_env_names()
        assert not unknown, f"{name}: not radtriage settings: {sorted(unknown)}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.broker_url == "redis://redis:6379/0", name
        assert settings.effective_database_url.startswith("postgresql+psycopg://radtriage:"), name
        assert str(settings.data_dir) == "/data" and str(settings.cxr_foundation_dir).startswith("/models/"), name
    listen_env = _service_env(services["radtriage"])
    settings = Settings(**{k.removeprefix("RADTRIAGE_").lower(): v for k, v in listen_env.items()
                           if k.startswith("RADTRIAGE_")})
    assert settings.dicom_host == "0.0.0.0" and settings.http_host == "0.0.0.0"
    api_env = _service_env(services["api"])
    assert Settings(**{k.removeprefix("RADTRIAGE_").lower(): v for k, v in api_env.items()
                       if k.startswith("RADTRIAGE_")}).http_host == "0.0.0.0"


def test_every_radtriage_variable_in_compose_and_dockerfiles_is_a_setting():
    fields = _setting_env_names()
    for path in [COMPOSE, *DOCKERFILES]:
        unknown = _setting_vars(path.read_text()) - fields
        assert not unknown, f"{path.relative_to(REPO)} uses unknown settings {sorted(unknown)}"


def test_compose_commands_parse_with_the_radtriage_cli():
    """A mistyped option in a service's command would crash-loop the container."""
    services = _compose()["services"]
    for name in APP_SERVICES:
        command_name, *rest = services[name]["command"]
        command = main.get_command(click.Context(main), command_name)
        assert command is not None, f"{name}: no command {command_name!r}"
        command.make_context(command_name, list(rest))  # raises click.UsageError
    assert CliRunner().invoke(main, ["worker", "--bogus-option"]).exit_code != 0  # the check can fail


def test_database_password_is_shared_and_interpolated_with_a_placeholder():
    services = _compose()["services"]
    raw_url = services["radtriage"]["environment"]["RADTRIAGE_DATABASE_URL"]
    assert "${POSTGRES_PASSWORD:-" in raw_url, "the database URL must use the same password variable"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:-")
    assert "change" in COMPOSE.read_text().split("services:")[0].lower(), "header must tell users to change secrets"


# -- Prometheus, Grafana ------------------------------------------------------------------


def test_alert_rules_have_the_prometheus_structure():
    document = yaml.safe_load(ALERTS.read_text())
    assert document["groups"], "no rule groups"
    names = set()
    for group in document["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
            names.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert re.fullmatch(r"\d+[smhd]", rule.get("for", "0m")), rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alerts_and_dashboard_use_only_metrics_the_code_exports(known_metrics):
    problems = []
    for rule in _alert_rules():
        problems += _check_promql(rule["expr"], known_metrics, f"alert {rule['alert']}")
    for title, expr in _dashboard_exprs():
        problems += _check_promql(expr, known_metrics, f"panel {title!r}")
    assert not problems, "\n".join(problems)
    # Every exported metric is watched somewhere (a new metric gets a panel).
    used = set(_RADTRIAGE_METRIC.findall(" ".join(e for _t, e in _dashboard_exprs())))
    unused = {n for n in known_metrics if n.startswith("radtriage_") and not n.endswith(("_sum", "_count"))} - used
    assert not unused, f"metrics without a dashboard panel: {sorted(unused)}"


def test_metric_check_catches_a_renamed_metric_or_label(known_metrics):
    assert _check_promql('rate(radtriage_dicom_stores_total[5m])', known_metrics, "x")
    assert _check_promql('radtriage_triage_tasks_total{result="triaged"}', known_metrics, "x")
    assert _check_promql('radtriage_studies{status="waiting"}', known_metrics, "x")
    assert not _check_promql('sum by (status) (radtriage_studies{status=~"queued|failed"})', known_metrics, "x")


def test_dashboard_and_datasource_provisioning_agree():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in sources["datasources"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids, panel["title"]
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/radtriage.yml").read_text())
    mounts = _compose()["services"]["grafana"]["volumes"]
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts, "provider path is not where compose mounts the JSON"


# -- Orthanc demo PACS -------------------------------------------------------------------


def test_orthanc_sends_to_radtriage_with_an_allowed_ae_title():
    config = orthanc_config()
    ae_title, host, port = config["DicomModalities"]["radtriage"]
    serve_env = _service_env(_compose()["services"]["radtriage"])
    assert ae_title == serve_env.get("RADTRIAGE_AE_TITLE", Settings.model_fields["ae_title"].default)
    assert host == "radtriage" and port == Settings.model_fields["dicom_port"].default
    allowed = [a.strip() for a in serve_env["RADTRIAGE_DICOM_ALLOWED_AES"].split(",")]
    assert config["DicomAet"] in allowed, "radtriage would refuse the demo PACS"
    assert config["AuthenticationEnabled"] is True and config["RegisteredUsers"]

"""The ``radtriage`` command: parses arguments and wires the parts; no domain logic here."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import click

from radtriage.cli_audit import audit
from radtriage.cli_backfill import backfill
from radtriage.cli_deliveries import deliveries
from radtriage.cli_dicom import echo, send
from radtriage.cli_options import config_option, load_cli_settings
from radtriage.cli_probe import probe
from radtriage.cli_purge import purge
from radtriage.cli_simulate import simulate
from radtriage.cli_users import users


@click.group()
@click.version_option(package_name="radtriage")
def main() -> None:
    """radtriage: chest X-ray worklist triage (research use only, not a diagnosis)."""


@main.command()
@config_option
@click.option("--markdown", is_flag=True, help="Print every setting with its default as a Markdown table instead")
def config(config_file: str | None, markdown: bool) -> None:
    """Print the effective settings (passwords masked)."""
    if markdown:
        from radtriage.settings import settings_markdown

        click.echo(settings_markdown())
        return
    click.echo(json.dumps(load_cli_settings(config_file).public_view(), indent=2))


@main.command()
@config_option
def serve(config_file: str | None) -> None:
    """Run the daemon: DICOM listener, worklist API, metrics and a triage worker."""
    _run_daemon(config_file, "serve")


@main.command()
@config_option
@click.option("--metrics-port", type=int, default=9100, show_default=True,
              help="Serve this process's Prometheus metrics on this port of http_host")
def listen(config_file: str | None, metrics_port: int) -> None:
    """Run the DICOM listener and the loops that move studies on (assembler, outbox relay, sweep,
    escalation, exports), without the API or workers: production runs one, beside
    `radtriage api` and `radtriage worker`. It migrates the database at start."""
    _run_daemon(config_file, "listen", metrics_port=metrics_port)


@main.command()
@config_option
def api(config_file: str | None) -> None:
    """Run the HTTP API, the worklist page and /metrics (the worklist's gauges) on http_host:http_port,
    without listener or workers (production: beside `radtriage listen`)."""
    _run_daemon(config_file, "api")


def _run_daemon(config_file: str | None, role: str, *, metrics_port: int | None = None) -> None:
    settings = load_cli_settings(config_file)
    from radtriage import logs

    logs.configure(settings.log_level, settings.log_format)
    if role != "api":
        # Counters of the listener members and the supervised worker land in this folder too.
        # It is wiped before any of them starts, and must be set before prometheus_client is
        # first imported. (`api` runs alone in its process: its own registry is enough.)
        metrics_dir = settings.data_dir.resolve() / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from radtriage.serve import API, LISTEN, SERVE, Daemon

    parts = {"serve": SERVE, "listen": LISTEN, "api": API}[role]
    daemon = Daemon(settings, config_file=config_file, parts=parts, metrics_port=metrics_port)
    try:
        daemon.start()
    except (OSError, ValueError) as exc:  # ValueError: unsafe exposure or unusable TLS files
        raise click.ClickException(f"cannot start: {exc}") from exc
    try:
        daemon.wait()
    finally:
        daemon.stop()


@main.command()
@config_option
@click.option("--queues", default="triage", show_default=True, help="Comma-separated queues to consume")
@click.option("--pool", default=None, help="Celery pool (solo: one model per process) [default: solo with "
              "--concurrency 1, prefork otherwise]")
@click.option("--concurrency", "-c", default=1, show_default=True,
              help="Worker processes (prefork pool), each with its own model and an equal share of the CPU cores")
@click.option("--metrics-port", type=int, default=None,
              help="Serve this worker's Prometheus metrics on this port (when not supervised by serve)")
@click.option("--quiet", is_flag=True, help="No Celery banner or superuser warning (serve logs its own start)")
def worker(config_file: str | None, queues: str, pool: str | None, concurrency: int, metrics_port: int | None,
           quiet: bool) -> None:
    """Run a Celery worker for the triage or draft queue (production: one per host or GPU)."""
    settings = load_cli_settings(config_file)
    if metrics_port is not None:
        # Prefork children count into files that this process serves; set before the
        # first import of prometheus_client.
        import tempfile

        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="radtriage-metrics-"))
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        start_http_server(metrics_port, addr="0.0.0.0", registry=registry)
    from radtriage import logs

    logs.configure(settings.log_level, settings.log_format)
    from radtriage import metrics
    from radtriage.wiring import worker_config
    from radtriage.worker_metrics import ModelGauges
    from worker import heartbeat
    from worker.tasks import WorkerContext, create_app, register

    config = worker_config(settings)
    pool = pool or ("solo" if concurrency == 1 else "prefork")
    if pool == "prefork":
        # Each child loads its own model: it gets its share of the cores, or N children
        # each running TensorFlow on every core would slow each other down.
        threads = max(1, len(os.sched_getaffinity(0)) // concurrency)
        config = dataclasses.replace(config, embedder=dataclasses.replace(config.embedder, threads=threads))
    app = create_app(config.broker)
    if pool == "prefork" and config.broker.embedded:
        # The parent polls the file broker and takes a message only when a child is free, so
        # each child would idle up to a poll between studies; a second one reserved per child
        # is there at once. That queue is first-in first-out anyway (no priorities to skip).
        app.conf.worker_prefetch_multiplier = 2
    app.conf.worker_hijack_root_logger = False  # keep this process's log format (text or JSON)
    context = WorkerContext(config)
    models = ModelGauges(context, queues=queues.split(","), embedder=settings.embedder)
    register(app, context, on_triage=models.after_triage(metrics.record_triage_task),
             on_draft=models.after_draft(metrics.record_draft_batch))
    beats = heartbeat.start(config.database_url, queues=queues, lost_after=settings.worker_lost_seconds)
    if pool == "prefork":
        # Tasks run in the children: each beats under its own name, which its claims carry.
        from celery.signals import worker_process_init

        worker_process_init.connect(
            lambda **_: heartbeat.start(config.database_url, queues=queues, lost_after=settings.worker_lost_seconds),
            weak=False,
        )
    if quiet:
        import warnings

        from celery.exceptions import SecurityWarning

        warnings.filterwarnings("ignore", category=SecurityWarning)
    if os.environ.get(metrics.MULTIPROC_ENV) and pool == "prefork":
        # A child's gauges leave the scrape with it (counters stay: they are totals).
        from celery.signals import worker_process_shutdown
        from prometheus_client import multiprocess

        worker_process_shutdown.connect(lambda **_: multiprocess.mark_process_dead(os.getpid()), weak=False)
    app.worker_main([
        *(["--quiet"] if quiet else []),
        "worker", "-Q", queues, "-P", pool, "-c", str(concurrency), "-l", settings.log_level,
        "-n", f"radtriage-{os.getpid()}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ])
    beats.terminate()


@main.command()
@config_option
def migrate(config_file: str | None) -> None:
    """Create or upgrade the worklist database schema."""
    from db.session import make_engine
    from db.session import migrate as run_migrations

    run_migrations(make_engine(load_cli_settings(config_file).effective_database_url))
    click.echo("database is at the newest schema")


for command in (backfill, probe, echo, send, users, audit, simulate, deliveries, purge):  # in their own modules
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

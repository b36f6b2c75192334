"""``radtriage serve``: listener, assembler, outbox relay, sweep, HTTP API and supervised workers.

The same ``Daemon`` runs the production processes with fewer parts: ``radtriage listen``
(listener and loops, its /metrics on a port of its own) and ``radtriage api`` (HTTP API).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import signal
import threading
from collections.abc import Callable

import uvicorn
from prometheus_client import multiprocess
from sqlalchemy.orm import Session, sessionmaker

from common.delivery import DeliveryStatus, DestinationKind
from db import heartbeats
from db.deliveries import sync_destinations
from db.reconcile import overdue_workers
from db.session import make_engine, make_session_factory, migrate
from db.users import any_user
from dicom.access import is_loopback
from dicom.errors import AccessConfigError
from dicom.netseam import ListenerPool
from dicom.orphans import remove_orphans
from radtriage import gauges, health, metrics, metrics_deliveries
from radtriage.api import create_api
from radtriage.auth import Authenticator, auth_config
from radtriage.listening import build_for_serve
from radtriage.locations import log_locations
from radtriage.settings import Settings, embedder_config
from radtriage.stage_metrics import StageMetrics
from radtriage.supervisor import WorkerSupervisor
from radtriage.wiring import broker_config, destinations, dispatch_config, make_sender, routes, sweep_config
from scoring.backends import missing_for
from worker.deliveries.dispatcher import Dispatcher, Finished
from worker.heartbeat import worker_name
from worker.loops import Assembler, BrokerWatch, EscalationLoop, OutboxRelay, Sweep
from worker.loops.periodic import Wakeup, run_every
from worker.tasks import WEIGHTS_HINT, create_app, medgemma_missing

log = logging.getLogger(__name__)

DELIVERY_POLL_SECONDS = 0.5  # each destination looks for due deliveries this often
RETENTION_EVERY_SECONDS = 24 * 3600
_SR_RESULTS = {DeliveryStatus.SENT: "sent", DeliveryStatus.PENDING: "retry", DeliveryStatus.DEAD: "failed"}


def check_http_exposure(s: Settings, sessions: sessionmaker[Session] | None = None) -> None:
    """Refuse to serve the worklist (patient data) to the network when nobody has to sign in.

    Raises
    ------
    AccessConfigError
        ``http_host`` is not loopback, and there is no user in the database (``sessions``),
        no OIDC issuer, no ``http_token``, and ``http_allow_any`` is off.
    """
    if is_loopback(s.http_host) or s.http_token or s.oidc_issuer or s.http_allow_any:
        return
    if sessions is not None:
        with sessions() as session:
            if any_user(session):
                return
    raise AccessConfigError(
        f"the worklist API would be open to anyone on {s.http_host}: add a user (radtriage users add NAME "
        "--role admin), set RADTRIAGE_OIDC_ISSUER and RADTRIAGE_OIDC_AUDIENCE, or the legacy "
        "RADTRIAGE_HTTP_TOKEN; or, behind a trusted proxy, RADTRIAGE_HTTP_ALLOW_ANY=1"
    )


# The parts a process runs: the DICOM listener with the loops that move studies on
# (assembler, relay, sweep, escalation, exports), the HTTP API, supervised workers.
SERVE = frozenset({"listen", "api", "workers"})
LISTEN = frozenset({"listen"})
API = frozenset({"api"})


class Daemon:
    """Everything ``serve`` runs (or the ``parts`` of it one process runs), started and stopped in order.

    ``metrics_port``: serve /metrics on this port of ``http_host`` (a process without the API).
    """

    def __init__(self, settings: Settings, *, config_file: str | None = None, parts: frozenset[str] = SERVE,
                 metrics_port: int | None = None) -> None:
        self.settings = settings
        self.parts = parts
        self._metrics_port = metrics_port
        self._config_file = config_file
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.workers: dict[str, WorkerSupervisor] = {}

    def start(self) -> None:
        s = self.settings
        log_locations(s, log)  # before the folder is made: a new one is worth a warning
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(s.effective_database_url)
        migrate(self.engine)
        self.sessions = make_session_factory(self.engine)
        # Worklist, metrics and health reads: never the write lock, so they cannot slow ingest.
        self.reads = make_session_factory(self.engine, readonly=True)
        if "api" in self.parts:
            check_http_exposure(s, self.sessions)  # users live in the database
        # Token lookups only read: on SQLite they must not take the write lock from ingest.
        self.auth = Authenticator(make_session_factory(self.engine, readonly=True), auth_config(s))

        config = embedder_config(s)
        missing = missing_for(config)
        if missing:
            hint = WEIGHTS_HINT if config.embedder == "cxr_foundation" else "MedSigLIP weights not found (see README)."
            log.warning("%s Missing: %s", hint, "; ".join(missing))
        self.drafts_unavailable = medgemma_missing(s.medgemma_model)
        if self.drafts_unavailable:
            log.warning("MedGemma drafts disabled (%s); triage is unaffected. See README 'Model weights'.",
                        self.drafts_unavailable)

        if "listen" in self.parts:
            self._start_flow()
        if "workers" in self.parts and s.run_worker:
            self._supervise("triage")
            if not self.drafts_unavailable:
                self._supervise("draft")
        if "api" in self.parts:
            self._start_api()
        if self._metrics_port is not None:
            self._serve_metrics(self._metrics_port)

    def _start_flow(self) -> None:
        """The listener and the loops that move studies on: one such process per deployment."""
        s = self.settings
        # Files a crash left stored but unrecorded, before the listener takes new ones; once more
        # when those the crash left just before a quick restart are old enough to be judged.
        remove_orphans(s.data_dir.resolve(), self.sessions, min_age=5.0)
        later = threading.Timer(6.0, remove_orphans, args=(s.data_dir.resolve(), self.sessions),
                                kwargs={"min_age": 5.0})
        later.daemon = True
        later.start()
        self.listener = build_for_serve(s, self.sessions, config_file=self._config_file)
        self.listener.start()

        relay_wakeup = Wakeup()  # the assembler hands completed studies to the relay at once
        assembler = Assembler(
            sessions=self.sessions, stable_seconds=s.stable_seconds, grace_seconds=s.completion_grace_seconds,
            on_completed=metrics.STUDIES_COMPLETED.inc, wake=relay_wakeup,
        )
        app = create_app(broker_config(s))
        self.relay = OutboxRelay(app=app, sessions=self.sessions, on_published=metrics.OUTBOX_PUBLISHED.inc)
        # The broker is asked each round whether it lost messages (restarted, or its queue empty).
        sweep = Sweep(sessions=self.sessions, config=sweep_config(s), on_redriven=metrics.record_redriven,
                      broker=BrokerWatch(app))
        sweep.run_once()  # whatever a crash left half-done is queued before new work
        self._every("assembler", assembler.poll_seconds, assembler.run_once)
        self._every("outbox-relay", s.outbox_poll_seconds, self.relay.run_once, wakeup=relay_wakeup)
        self._every("sweep", s.sweep_interval_seconds, sweep.run_once)
        escalation = EscalationLoop(sessions=self.sessions, waits=s.waits,
                                    claim_idle=dt.timedelta(minutes=s.claim_idle_minutes),
                                    poll_seconds=s.escalation_poll_seconds)
        self._every("escalation", escalation.poll_seconds, escalation.run_once)
        self._every("watchdog", min(30.0, s.task_time_limit_seconds / 4), self._stop_hung_workers)
        self._start_deliveries()
        self._every("stage-metrics", 1.0, StageMetrics(reads=self.reads).run_once)
        if s.retention_days:  # at start, then daily
            self._every("retention", RETENTION_EVERY_SECONDS, self._purge)

    def _purge(self) -> None:
        from db.retention import purge

        purged = purge(self.sessions, data_dir=self.settings.data_dir.resolve(),
                       older_than=dt.timedelta(days=self.settings.retention_days))
        log.info("retention: purged %s", purged)

    def _start_deliveries(self) -> None:
        """One dispatcher per destination, each on its own thread: one that is down delays no other."""
        s = self.settings
        found = destinations(s)
        with self.sessions() as session:
            sync_destinations(session, routes(s))  # every process (workers too) reads who receives what
        metrics_deliveries.start_at_zero(d.name for d in found)
        self.dispatchers: list[Dispatcher] = []
        for d in found:
            sr = d.kind is DestinationKind.DICOM_SR
            dispatcher = Dispatcher(sessions=self.sessions, config=dispatch_config(s, d),
                                    sender=make_sender(s, d, self.sessions),
                                    on_finished=self._sr_finished if sr else metrics_deliveries.record)
            self.dispatchers.append(dispatcher)
            self._every(f"deliveries-{d.name}", DELIVERY_POLL_SECONDS, dispatcher.run_once)

    def _sr_finished(self, finished: Finished) -> None:
        """A DICOM SR delivery also keeps the draft's SR state and the SR export counter."""
        metrics_deliveries.record(finished)
        from worker.deliveries.dicom_sr import record_sr_state  # highdicom: only where SRs are sent

        draft = finished.delivery.payload.get("draft") or {}
        if finished.status in _SR_RESULTS and "id" in draft:
            metrics.record_sr_export(_SR_RESULTS[finished.status])
            with self.sessions() as session:
                record_sr_state(session, draft_id=draft["id"], status=finished.status, detail=finished.detail,
                                retry_at=finished.retry_at)

    def _start_api(self) -> None:
        s = self.settings
        self.api = create_api(sessions=self.sessions, health=self.health, metrics=self.render_metrics,
                              auth=self.auth, data_dir=s.data_dir.resolve(),
                              viewer_url_template=s.viewer_url_template)
        self._http = uvicorn.Server(uvicorn.Config(self.api, host=s.http_host, port=s.http_port, log_level="warning",
                                                   timeout_graceful_shutdown=5))
        self._spawn("http", self._http.run)
        log.info("HTTP API on http://%s:%d", s.http_host, s.http_port)

    def _serve_metrics(self, port: int) -> None:
        """/metrics of a process without the API (``radtriage listen``), unauthenticated like a worker's."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=self.settings.http_host, registry=_Rendered(self.render_metrics))
        self._metrics_server = server
        log.info("metrics on http://%s:%d/metrics", self.settings.http_host, port)

    def _supervise(self, queue: str) -> None:
        argv = ["--queues", queue, "--pool", "solo", "--quiet"]
        argv += ["--config", self._config_file] if self._config_file else []
        self.workers[queue] = WorkerSupervisor(argv, on_exit=self._worker_exited)
        self.workers[queue].start()

    def _stop_hung_workers(self) -> None:
        """Kill a supervised worker whose task has run past the time limit.

        The solo pool cannot enforce Celery's time limits, so a hung model call would stop
        its queue; killed, the worker is restarted and the sweep queues the study again
        (up to ``task_max_retries`` + 1 attempts, then it is failed).
        """
        names = {worker_name(w.pid): w for w in self.workers.values() if w.alive}
        if not names:
            return
        with self.sessions() as session:
            hung = overdue_workers(session, workers=list(names), seconds=self.settings.task_time_limit_seconds)
        for name in hung:
            log.error("worker %s ran a task past the time limit; stopping it", name)
            names[name].kill()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _every(self, name: str, seconds: float, step: Callable[[], object], wakeup: Wakeup | None = None) -> None:
        """Run ``step`` every ``seconds`` (and when ``wakeup`` fires) until stop; a failed round is logged."""
        self._spawn(name, functools.partial(run_every, name, seconds, step, stop=self._stop, wakeup=wakeup))

    def health(self) -> dict:
        s = self.settings
        checks = {
            "database": health.database_check(self.engine),
            "dicom_listener": self._listener_check,
            "queue": lambda: {"status": {True: "ok", False: "unreachable", None: "starting"}[self.relay.broker_ok],
                              "broker": "embedded" if s.embedded_broker else "redis"},
            "workers": self._workers_check,
            "triage_model": health.model_check(s),
            "drafts": lambda: ({"status": "disabled", "detail": self.drafts_unavailable}
                               if self.drafts_unavailable else {"status": "ok", "model": s.medgemma_model}),
        }
        if "listen" not in self.parts:  # `radtriage api`: the listener and relay run in `radtriage listen`
            del checks["dicom_listener"], checks["queue"]
        return health.report(checks)

    def _listener_check(self) -> dict:
        s = self.settings
        check = {"status": "ok" if self.listener.running else "stopped",
                 "address": f"{s.dicom_host}:{s.dicom_port}", "ae_title": s.ae_title}
        if isinstance(self.listener, ListenerPool):
            check["processes"] = self.listener.processes
        return check

    def _workers_check(self) -> dict:
        with self.reads() as session:
            alive = heartbeats.alive_by_queue(session, within_seconds=self.settings.worker_lost_seconds)
        wanted = ["triage"] + ([] if self.drafts_unavailable else ["draft"])
        status = "ok" if all(alive.get(q) for q in wanted) else "down"
        supervised = {q: {"alive": w.alive, "pid": w.pid, "restarts": w.restarts} for q, w in self.workers.items()}
        return {"status": status, "alive_by_queue": alive, "supervised": supervised}

    def render_metrics(self) -> tuple[bytes, str]:
        """This process's metrics; the worklist's gauges only where the API runs, so that split
        processes do not export them twice."""
        extra = [gauges.disk_gauges(self.settings.data_dir)]
        if "api" in self.parts:
            limit = self.settings.stat_read_limit_minutes
            extra.append(gauges.database_gauges(self.reads, stat_read_limit_minutes=limit))
            extra.append(metrics_deliveries.backlog_gauges(
                self.reads, destinations=[d.name for d in destinations(self.settings)],
                limit_minutes=self.settings.delivery_backlog_alert_minutes))
        return metrics.render(extra)

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        log.info("shutting down")
        if "api" in self.parts:
            self.api.state.context.events.close()  # open event streams end, or the server would wait on them
        if "api" in self.parts:
            self._http.should_exit = True
        if "listen" in self.parts:
            self.listener.stop()
        if self._metrics_port is not None:
            self._metrics_server.shutdown()
        for worker in self.workers.values():
            worker.stop()
        for thread in self._threads:
            thread.join(10)
        for dispatcher in getattr(self, "dispatchers", []):
            dispatcher.close()
        self.engine.dispose()


    def _worker_exited(self, pid: int) -> None:
        """A supervised worker died: its claims are re-driven now, not after it goes silent."""
        if os.environ.get(metrics.MULTIPROC_ENV):
            multiprocess.mark_process_dead(pid)
        with self.sessions() as session:
            heartbeats.forget(session, name=worker_name(pid))


class _Rendered:
    """A registry for prometheus_client's HTTP server that serves what ``render`` returns."""

    def __init__(self, render: Callable[[], tuple[bytes, str]]) -> None:
        self._render = render

    def collect(self):
        from prometheus_client.parser import text_string_to_metric_families

        body, _content_type = self._render()
        return text_string_to_metric_families(body.decode())

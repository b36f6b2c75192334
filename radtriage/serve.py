"""``radtriage serve``: listener, assembler, outbox relay, HTTP API and a supervised worker."""

from __future__ import annotations

import logging
import os
import signal
import threading

import uvicorn
from prometheus_client import multiprocess

from db.session import make_engine, make_session_factory, migrate
from db.outbox import count_pending
from db.worklist import status_counts
from dicom.assembler import Assembler
from dicom.listener import Listener, StoreHandler
from radtriage import health, metrics
from radtriage.api import create_api
from radtriage.settings import Settings
from radtriage.supervisor import WorkerSupervisor
from scoring.cxr_foundation import missing_parts
from worker.app import create_app
from worker.context import WEIGHTS_HINT
from worker.relay import OutboxRelay

log = logging.getLogger(__name__)


class Daemon:
    """Everything ``serve`` runs, started and stopped in order."""

    def __init__(self, settings: Settings, *, config_file: str | None = None) -> None:
        self.settings = settings
        self._config_file = config_file
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(s.effective_database_url)
        migrate(self.engine)
        self.sessions = make_session_factory(self.engine)

        missing = missing_parts(s.cxr_foundation_dir, s.vocab_path)
        if missing:
            log.warning("%s Missing: %s", WEIGHTS_HINT, "; ".join(missing))

        handler = StoreHandler(data_dir=s.data_dir.resolve(), sessions=self.sessions, observe=metrics.record_store)
        self.listener = Listener(
            ae_title=s.ae_title, host=s.dicom_host, port=s.dicom_port, handler=handler,
            on_association=lambda result: metrics.DICOM_ASSOCIATIONS.labels(result=result).inc(),
        )
        self.listener.start()

        self.assembler = Assembler(
            sessions=self.sessions, stable_seconds=s.stable_seconds, on_completed=metrics.STUDIES_COMPLETED.inc
        )
        self.relay = OutboxRelay(
            app=create_app(s), sessions=self.sessions, poll_seconds=s.outbox_poll_seconds,
            on_published=metrics.OUTBOX_PUBLISHED.inc,
        )
        self._spawn("assembler", self.assembler.run_forever)
        self._spawn("outbox-relay", self.relay.run_forever)

        self.worker = None
        if s.run_worker:
            argv = ["--pool", "solo"] + (["--config", self._config_file] if self._config_file else [])
            self.worker = WorkerSupervisor(argv, on_exit=_mark_process_dead)
            self.worker.start()

        api = create_api(sessions=self.sessions, health=self.health, metrics=self.render_metrics)
        self._http = uvicorn.Server(uvicorn.Config(api, host=s.http_host, port=s.http_port, log_level="warning"))
        self._spawn("http", lambda _stop: self._http.run())
        log.info("HTTP API on http://%s:%d", s.http_host, s.http_port)

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def health(self) -> dict:
        checks = {
            "database": health.database_check(self.engine),
            "dicom_listener": lambda: {"status": "ok" if self.listener.running else "stopped",
                                       "address": f"{self.settings.dicom_host}:{self.settings.dicom_port}",
                                       "ae_title": self.settings.ae_title},
            "queue": lambda: {"status": {True: "ok", False: "unreachable", None: "starting"}[self.relay.broker_ok],
                              "broker": "embedded" if self.settings.embedded_broker else "redis"},
            "cxr_foundation": health.model_check(self.settings),
        }
        if self.worker is not None:
            checks["worker"] = lambda: {"status": "ok" if self.worker.alive else "down",
                                        "restarts": self.worker.restarts}
        return health.report(checks)

    def render_metrics(self) -> tuple[bytes, str]:
        def read():
            with self.sessions() as session:
                return {
                    "radtriage_studies": ("Studies on the worklist by status", "status", status_counts(session)),
                    "radtriage_outbox_pending": ("Outbox rows not yet handed to the broker", "",
                                                 {"": count_pending(session)}),
                }

        return metrics.render([metrics.GaugeCollector(read)])

    def wait(self) -> None:
        """Block until SIGINT/SIGTERM."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        log.info("shutting down")
        self._http.should_exit = True
        self.listener.stop()
        if self.worker is not None:
            self.worker.stop()
        for thread in self._threads:
            thread.join(10)
        self.engine.dispose()


def _mark_process_dead(pid: int) -> None:
    if os.environ.get(metrics.MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)

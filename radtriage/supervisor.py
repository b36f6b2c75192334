"""Runs the triage worker as a child process and restarts it if it dies."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time

log = logging.getLogger(__name__)


class WorkerSupervisor:
    """Keeps ``radtriage worker`` running; ``argv`` is appended to that command."""

    def __init__(self, argv: list[str], *, on_exit=None) -> None:
        self._argv = [sys.executable, "-m", "radtriage", "worker", *argv]
        self._on_exit = on_exit
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        exits: list[float] = []  # when recent workers exited, to tell a crash loop from a few kills
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self._proc = subprocess.Popen(self._argv)
            except OSError as exc:  # keep trying: a daemon without its worker triages nothing
                log.error("cannot start the worker (%s); retrying in %.0f s", type(exc).__name__, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            log.info("worker started (pid %d)", self._proc.pid)
            code = self._proc.wait()
            if self._on_exit:
                try:
                    self._on_exit(self._proc.pid)
                except Exception as exc:
                    log.warning("after worker exit: %s", type(exc).__name__)
            if self._stop.is_set():
                return
            # A worker killed now and then (out of memory, the watchdog) is back within a second, as
            # what it held waits for it; only a crash loop (more than 3 exits a minute) backs off.
            now = time.monotonic()
            exits = [t for t in exits if now - t < 60] + [now]
            backoff = 1.0 if len(exits) <= 3 else min(2.0 ** (len(exits) - 3), 30.0)
            self.restarts += 1
            log.warning("worker exited with %s; restarting in %.0f s", code, backoff)
            self._stop.wait(backoff)

    def kill(self) -> None:
        """Kill the current worker process (hung); the supervisor starts a new one."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout)

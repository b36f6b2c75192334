"""Pieces of the fault tests: private Redis and PostgreSQL servers the test may stop, a daemon
killed as a whole, C-STORE pushes that keep what was acknowledged, and the database's account
of what was stored and triaged."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from scoring.urgency import DEFAULT_POLICY_PATH
from tests.conftest import need
from tests.e2e.daemon import Daemon, free_port
from tests.factories import radiograph
from tests.reliability.harness import process_tree

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700


class PrivateRedis:
    """A redis-server on a spare port without persistence: stopping it loses every message."""

    def __init__(self, folder: Path) -> None:
        need(shutil.which("redis-server") is not None, "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(folder)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self._cmd, stdout=subprocess.DEVNULL)
        _wait(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                     check=False).stdout.strip() == b"PONG", 10, "private redis")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb, trust auth) on a spare port; run as the
    ``postgres`` user when the test runs as root, as initdb refuses root."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        need(bool(binaries), "PostgreSQL server binaries (initdb, pg_ctl)")
        self.bin = Path(binaries[-1]).parent
        # Not under pytest's folder: the postgres user cannot enter root's private temp folders.
        self.folder = folder = Path(tempfile.mkdtemp(prefix="radtriage-pg-"))
        self.data = folder / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._as = []
        if os.geteuid() == 0:
            need(shutil.which("runuser") is not None, "runuser (to run PostgreSQL as postgres)")
            self._as = ["runuser", "-u", "postgres", "--"]
        if self._as:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "pg.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)


def blocking_policy(folder: Path) -> Path:
    """A policy file that is a FIFO: a worker blocks reading it inside its first triage (the
    study claimed, nothing recorded) until :func:`release_policy`."""
    fifo = folder / "policy.toml"
    os.mkfifo(fifo)
    return fifo


def release_policy(fifo: Path) -> None:
    """New readers get the real policy; a worker already waiting on the FIFO is handed it too."""
    waiting = fifo.with_name("policy.fifo")
    os.link(fifo, waiting)
    real = fifo.with_name("policy.real")
    shutil.copy(DEFAULT_POLICY_PATH, real)
    os.replace(real, fifo)
    try:
        fd = os.open(waiting, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # nobody waiting
        return
    with os.fdopen(fd, "wb") as out:
        out.write(Path(DEFAULT_POLICY_PATH).read_bytes())


def kill_whole(daemon: Daemon) -> None:
    """SIGKILL ``serve`` and every process it started (workers, listener members, sidecars) at once."""
    for pid in process_tree(daemon.proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    daemon.proc.wait(10)


class Push(threading.Thread):
    """One association sending ``datasets`` with pynetdicom; ``acked`` holds the SOP Instance
    UIDs answered Success, ``statuses`` every status received; a cut association ends it."""

    def __init__(self, port: int, datasets: list) -> None:
        super().__init__(daemon=True)
        self.port, self.datasets = port, datasets
        self.acked: list[str] = []
        self.statuses: list[int] = []

    def run(self) -> None:
        from pynetdicom import AE

        ae = AE(ae_title="RELIABLE")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
        ae.add_requested_context(self.datasets[0].SOPClassUID, self.datasets[0].file_meta.TransferSyntaxUID)
        try:
            assoc = ae.associate("127.0.0.1", self.port, ae_title="RADTRIAGE")
            if not assoc.is_established:
                return
            for ds in self.datasets:
                answer = assoc.send_c_store(ds)
                if "Status" not in answer:
                    return  # aborted or timed out: the rest was not acknowledged
                self.statuses.append(int(answer.Status))
                if answer.Status == SUCCESS:
                    self.acked.append(str(ds.SOPInstanceUID))
            assoc.release()
        except (OSError, RuntimeError):
            pass


def study(seed: int, images: int) -> list:
    """``images`` radiographs of one new study."""
    first = radiograph(seed=seed)
    return [first] + [radiograph(seed=seed * 100 + i, study_uid=str(first.StudyInstanceUID))
                      for i in range(1, images)]


def push_all(port: int, studies: list[list]) -> list[Push]:
    pushes = [Push(port, datasets) for datasets in studies]
    for push in pushes:
        push.start()
    return pushes


def store_one(port: int, ds) -> int | None:
    """One C-STORE in its own association: the status, or None when there was no answer."""
    push = Push(port, [ds])
    push.run()
    return push.statuses[0] if push.statuses else None


class Records:
    """What the daemon's database says (SQLite in the data folder, or ``url``)."""

    def __init__(self, daemon: Daemon, url: str | None = None) -> None:
        self.daemon = daemon
        self.url = url

    def rows(self, sql: str, **params) -> list[tuple]:
        if self.url is None:
            with sqlite3.connect(self.daemon.data_dir / "radtriage.sqlite3", timeout=30) as connection:
                return connection.execute(sql, params).fetchall()  # sqlite3 takes :name too
        engine = create_engine(self.url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql), params)]
        finally:
            engine.dispose()

    def instances(self) -> dict[str, str]:
        """SOP Instance UID → stored path of every recorded instance."""
        return dict(self.rows("SELECT sop_instance_uid, path FROM instances"))

    def triaged(self) -> dict[str, int]:
        """Study Instance UID → how many times it was triaged."""
        return dict(self.rows("SELECT s.study_instance_uid, COUNT(e.id) FROM studies s LEFT JOIN events e "
                              "ON e.study_id = s.id AND e.stage = 'triaged' GROUP BY s.study_instance_uid"))

    def revisions(self) -> dict[str, int]:
        return dict(self.rows("SELECT study_instance_uid, revision FROM studies"))

    def statuses(self) -> dict[str, str]:
        return dict(self.rows("SELECT study_instance_uid, status FROM studies"))

    def redriven(self) -> int:
        return self.rows("SELECT COUNT(*) FROM events WHERE stage = 'redriven'")[0][0]


def stored_files(data_dir: Path) -> set[str]:
    return {p.relative_to(data_dir).as_posix() for p in (data_dir / "objects").rglob("*.dcm")}


def temporary_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "objects").rglob("*") if p.is_file() and not p.name.endswith(".dcm")]


def wait_final(records: Records, uids: set[str], timeout: float) -> float:
    """Seconds until every study of ``uids`` is triaged (or failed); raises after ``timeout``."""
    started = time.monotonic()

    def final() -> bool:
        statuses = records.statuses()
        return all(statuses.get(uid) in ("triaged", "failed") for uid in uids)

    _wait(final, timeout, f"{len(uids)} studies final", log=records.daemon.log)
    return time.monotonic() - started


def _wait(predicate, timeout: float, what: str, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001, S110  a database mid-restart: ask again
            pass
        time.sleep(0.25)
    tail = log()[-4000:] if log else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")

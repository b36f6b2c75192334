"""Workers that never lose a study: a killed worker, a broker outage (real daemon, real brokers)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from scoring.urgency import DEFAULT_POLICY_PATH
from tests.conftest import need
from tests.e2e.daemon import Daemon, c_store, events, free_port
from tests.factories import radiograph

pytestmark = pytest.mark.e2e

SUCCESS = 0x0000


def sqlite_url(daemon: Daemon) -> str:
    return f"sqlite:///{daemon.data_dir / 'radtriage.sqlite3'}"


def status_of(daemon: Daemon, uid: str) -> str | None:
    return next((i["status"] for i in daemon.worklist() if i["study_instance_uid"] == uid), None)


@pytest.fixture
def blocking_policy(tmp_path):
    """A policy file that is a FIFO: the worker blocks reading it, in the middle of a triage,
    until the test swaps in the real file."""
    fifo = tmp_path / "policy.toml"
    os.mkfifo(fifo)

    def release() -> None:
        real = tmp_path / "policy.real"
        shutil.copy(DEFAULT_POLICY_PATH, real)
        os.replace(real, fifo)  # new readers get the file; the killed reader is gone

    return fifo, release


def _kill_mid_triage(tmp_path, cxr_foundation_dir, blocking_policy, database_url=None, **env):
    fifo, release = blocking_policy
    env.update(
        RADTRIAGE_CXR_FOUNDATION_DIR=str(cxr_foundation_dir),
        RADTRIAGE_POLICY_FILE=str(fifo),
        RADTRIAGE_WORKER_LOST_SECONDS="4",
        RADTRIAGE_SWEEP_INTERVAL_SECONDS="0.5",
    )
    if database_url:
        env["RADTRIAGE_DATABASE_URL"] = database_url
    with Daemon(tmp_path, **env) as daemon:
        ds = radiograph(seed=1)
        assert c_store(daemon.dicom_port, [ds]) == [SUCCESS]
        uid = str(ds.StudyInstanceUID)
        daemon.wait_for(lambda: status_of(daemon, uid) == "triaging", 60, "the triage to start")
        pid = daemon.health()["components"]["workers"]["supervised"]["triage"]["pid"]
        os.kill(pid, signal.SIGKILL)
        release()
        daemon.wait_for(lambda: status_of(daemon, uid) == "triaged", 90, "the study to be triaged after the kill")
        url = database_url or sqlite_url(daemon)
        time.sleep(1.0)  # give a second delivery, if any, the chance to write
        assert events(url, "triaged") == {uid: 1}
        assert events(url, "redriven") == {uid: 1}
        item = next(i for i in daemon.worklist() if i["study_instance_uid"] == uid)
        assert item["urgency_score"] is not None
        assert daemon.health()["components"]["workers"]["supervised"]["triage"]["restarts"] >= 1


def test_sigkill_mid_triage_embedded(tmp_path, cxr_foundation_dir, blocking_policy):
    _kill_mid_triage(tmp_path, cxr_foundation_dir, blocking_policy)


def test_sigkill_mid_triage_redis(tmp_path, cxr_foundation_dir, blocking_policy, redis_prefix, postgres_url):
    url, prefix = redis_prefix
    _kill_mid_triage(tmp_path, cxr_foundation_dir, blocking_policy, database_url=postgres_url,
                     RADTRIAGE_BROKER_URL=url, RADTRIAGE_BROKER_KEY_PREFIX=prefix)


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of the test's own on a spare port, which the test may stop and restart."""
    need(shutil.which("redis-server") is not None, "redis-server")
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(tmp_path)]

    class Server:
        url = f"redis://127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self):
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
            for _ in range(100):
                if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                    return
                time.sleep(0.1)
            raise AssertionError("private redis did not start")

        def stop(self):
            self.proc.terminate()
            self.proc.wait(10)

    server = Server()
    server.start()
    yield server
    if server.proc.poll() is None:
        server.stop()


def test_broker_outage_loses_and_doubles_nothing(tmp_path, private_redis):
    with Daemon(tmp_path, RADTRIAGE_BROKER_URL=private_redis.url) as daemon:
        before = [radiograph(seed=i) for i in range(2)]
        assert c_store(daemon.dicom_port, before) == [SUCCESS] * 2
        daemon.wait_triaged(2)

        private_redis.stop()
        during = []
        deadline = time.monotonic() + 10
        seed = 10
        while time.monotonic() < deadline:  # studies keep arriving for the 10 s the broker is down
            ds = radiograph(seed=seed)
            seed += 1
            assert c_store(daemon.dicom_port, [ds]) == [SUCCESS], "listener stopped accepting"
            during.append(ds)
            time.sleep(2)
        assert daemon.health()["components"]["queue"]["status"] == "unreachable"
        private_redis.start()

        items = daemon.wait_triaged(len(before) + len(during), timeout=120)
        assert all(i["status"] == "triaged" for i in items)
        sent = {str(ds.StudyInstanceUID) for ds in before + during}
        assert events(sqlite_url(daemon), "triaged") == {uid: 1 for uid in sent}

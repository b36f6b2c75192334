"""The listener pool: member processes behind one port, as ``serve`` runs it by default on a multi-core box."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from sqlalchemy import func, select

from db.models import Instance
from db.session import make_engine, make_session_factory, migrate
from dicom.access import client_tls_context
from dicom.errors import AssociationFailed
from dicom.netseam import ListenerPool
from dicom.scu import echo, send_datasets
from radtriage.listening import build_for_serve
from radtriage.settings import Settings
from tests.e2e.daemon import free_port
from tests.factories import radiograph

AE_TITLE = "RADTRIAGE"


@contextlib.contextmanager
def running_pool(tmp_path, monkeypatch, *, processes: int = 2, **settings: str) -> Iterator[tuple[ListenerPool, callable]]:
    """A started pool whose members read their settings from this environment, and a row counter."""
    env = {"RADTRIAGE_DATA_DIR": str(tmp_path / "data"), "RADTRIAGE_DICOM_PORT": str(free_port()),
           "RADTRIAGE_AE_TITLE": AE_TITLE, "RADTRIAGE_DICOM_LISTENER_PROCESSES": str(processes), **settings}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    s.data_dir.mkdir(parents=True)
    engine = make_engine(s.effective_database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    pool = build_for_serve(s, sessions, config_file=None)
    assert isinstance(pool, ListenerPool)
    pool.start()

    def rows() -> int:
        with sessions() as session:
            return session.scalar(select(func.count()).select_from(Instance))

    try:
        yield pool, rows
    finally:
        pool.stop()
        engine.dispose()


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_connections_are_spread_over_the_members_and_everything_is_stored(tmp_path, monkeypatch):
    with running_pool(tmp_path, monkeypatch) as (pool, rows):
        port = pool.address[1]
        results: list[list[int]] = []

        def sender(n: int) -> None:
            results.append(send_datasets("127.0.0.1", port, AE_TITLE, f"SCU{n}", [radiograph() for _ in range(5)]))

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(code for codes in results for code in codes) == [0] * 40
        assert rows() == 40
        members = pool.processes
        assert all(m["served"] > 0 for m in members), members
        assert sum(m["served"] for m in members) == 8
        # Every member reported each connection closed: nothing counts against the limit.
        wait_for(lambda: all(m["open"] == 0 for m in pool.processes), 10, "open connections to drop to 0")


def test_the_association_limit_spans_all_members(tmp_path, monkeypatch):
    with running_pool(tmp_path, monkeypatch, RADTRIAGE_DICOM_MAX_ASSOCIATIONS="1") as (pool, _rows):
        port = pool.address[1]
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        held = ae.associate("127.0.0.1", port, ae_title=AE_TITLE)
        assert held.is_established
        try:
            # The next connection goes to the other member, which still refuses it: the limit is the pool's.
            with pytest.raises(AssociationFailed, match="association limit"):
                echo("127.0.0.1", port, called_ae=AE_TITLE)
        finally:
            held.release()
        wait_for(lambda: all(m["open"] == 0 for m in pool.processes), 10, "the held association's slot to free")
        assert echo("127.0.0.1", port, called_ae=AE_TITLE) == 0


def test_tls_is_served_by_the_members(tmp_path, monkeypatch, pki):
    tls = {"RADTRIAGE_DICOM_TLS_CERT": str(pki / "server.pem"), "RADTRIAGE_DICOM_TLS_KEY": str(pki / "server.key"),
           "RADTRIAGE_DICOM_TLS_CA": str(pki / "ca.pem"), "RADTRIAGE_DICOM_TLS_REQUIRE_CLIENT_CERT": "1"}
    with running_pool(tmp_path, monkeypatch, **tls) as (pool, rows):
        port = pool.address[1]
        client = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
        for _ in range(2):  # one connection to each member
            assert send_datasets("127.0.0.1", port, AE_TITLE, "TLSSCU", [radiograph()], client) == [0]
        with pytest.raises(AssociationFailed):
            echo("127.0.0.1", port, called_ae=AE_TITLE, timeout=5)
        assert rows() == 2
        # A failed handshake ends its connection before any association: it is still counted as closed.
        wait_for(lambda: all(m["open"] == 0 for m in pool.processes), 10, "open connections to drop to 0")


def test_failed_tls_handshakes_do_not_hold_association_slots(tmp_path, monkeypatch, pki):
    """A connection that fails its handshake is gone, though pynetdicom's association thread
    waits out the ACSE timeout: the pool's limit, not that thread, decides what is admitted."""
    tls = {"RADTRIAGE_DICOM_TLS_CERT": str(pki / "server.pem"), "RADTRIAGE_DICOM_TLS_KEY": str(pki / "server.key"),
           "RADTRIAGE_DICOM_TLS_CA": str(pki / "ca.pem"), "RADTRIAGE_DICOM_TLS_REQUIRE_CLIENT_CERT": "1",
           "RADTRIAGE_DICOM_MAX_ASSOCIATIONS": "1", "RADTRIAGE_DICOM_ACSE_TIMEOUT": "5"}  # outlives the test, not stop()
    with running_pool(tmp_path, monkeypatch, **tls) as (pool, rows):
        port = pool.address[1]
        for _ in range(3):
            with pytest.raises(AssociationFailed):
                echo("127.0.0.1", port, called_ae=AE_TITLE, timeout=5)
            wait_for(lambda: all(m["open"] == 0 for m in pool.processes), 10, "the failed connection to count as closed")
        client = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
        for _ in range(2):
            assert send_datasets("127.0.0.1", port, AE_TITLE, "TLSSCU", [radiograph()], client) == [0]
        assert rows() == 2


def test_a_killed_member_is_replaced(tmp_path, monkeypatch):
    with running_pool(tmp_path, monkeypatch) as (pool, rows):
        port = pool.address[1]
        victim = pool.processes[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: pool.processes[0]["restarts"] == 1 and pool.processes[0]["alive"], 30,
                 "the killed member to be replaced")
        assert pool.processes[0]["pid"] != victim
        for _ in range(4):
            assert send_datasets("127.0.0.1", port, AE_TITLE, "SCU", [radiograph()]) == [0]
        assert rows() == 4
        assert pool.running

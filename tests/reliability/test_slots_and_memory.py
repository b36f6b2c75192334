"""Hostile peers before authentication: idle ones cannot lock the PACS out, huge ones cannot take memory.

Against ``radtriage serve`` as deployed (the accepting process and its listener processes):
idle peers holding every slot they can must not stop another host's C-ECHO; peers announcing
a 512 MiB A-ASSOCIATE-RQ or P-DATA before any association must not grow a listener process
by more than a few MB; 10,000 short associations must not grow one by more than 20 MB.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.e2e.daemon import Daemon
from tests.reliability.harness import (
    RELEASE_RQ,
    associate_rq,
    closed_by_peer,
    echo,
    listener_pids,
    read_pdu_type,
    report,
    rss_kib,
)

pytestmark = pytest.mark.reliability

ACSE_TIMEOUT = 3.0
SHORT_ASSOCIATIONS = 10_000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    with Daemon(tmp_path_factory.mktemp("slots"), RADTRIAGE_DICOM_ACSE_TIMEOUT=str(ACSE_TIMEOUT),
                RADTRIAGE_DICOM_NETWORK_TIMEOUT="10") as running:
        yield running


def echo_from(host: str, port: int, *, timeout: float = 5.0) -> bool:
    return echo(port, host=host, timeout=timeout)


def connect_from(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def test_idle_peers_do_not_lock_out_another_host(daemon, request):
    """16 peers from one host send 3 bytes or a PDU header and then nothing, and stay connected."""
    idle = []
    for index in range(16):
        sock = connect_from("127.0.0.1", daemon.dicom_port)
        sock.sendall(b"\x01\x00\x00" if index % 2 else b"\x01\x00\x00\x00\x00\xc8")
        idle.append(sock)
    started = time.monotonic()
    try:
        while not echo_from("127.0.0.2", daemon.dicom_port):
            assert time.monotonic() - started < 15, "no C-ECHO from another host got through in 15 s"
            time.sleep(0.2)
        echo_seconds = time.monotonic() - started
        open_ones = [sock for sock in idle if not closed_by_peer(sock, 0.2)]
        closed_at_once = len(idle) - len(open_ones)
        # The rest are cut off once their partial PDU is overdue (the ACSE timeout), freeing their slots.
        never = [sock for sock in open_ones if not closed_by_peer(sock, ACSE_TIMEOUT + 5)]
        assert not never, f"{len(never)} peers holding a partial PDU were never cut off"
        all_closed_seconds = time.monotonic() - started
        assert echo_from("127.0.0.1", daemon.dicom_port)
    finally:
        for sock in idle:
            sock.close()
    report(request, idle_peers=len(idle), echo_from_other_host_s=round(echo_seconds, 2),
           closed_at_once_by_host_cap=closed_at_once, all_idle_cut_off_s=round(all_closed_seconds, 2))


def _flood(host: str, port: int, header: bytes, results: list, payload: int = 4 * 1024 * 1024) -> None:
    """Announce a huge PDU, then stream junk until the listener closes; note how long that took."""
    sock = connect_from(host, port)
    started = time.monotonic()
    sent = 0
    try:
        sock.settimeout(10)
        sock.sendall(header)
        chunk = bytes(65536)
        while sent < payload:
            sent += sock.send(chunk)
    except OSError:
        pass  # reset or closed by the listener: what we want
    finally:
        closed = closed_by_peer(sock, 10)
        results.append((closed, time.monotonic() - started, sent))
        sock.close()


def test_huge_pdus_before_association_take_no_memory(daemon, request):
    pids = listener_pids(daemon.proc.pid)
    before = {pid: rss_kib(pid) for pid in pids}
    peak = dict(before)
    results: list = []
    headers = [b"\x01\x00\x20\x00\x00\x00",  # A-ASSOCIATE-RQ of 512 MiB
               b"\x04\x00\xff\xff\xff\xff",  # P-DATA-TF of 4 GiB, before any association
               b"\x01\x00\xff\xff\xff\xff"]
    threads = [threading.Thread(target=_flood, args=(f"127.0.0.{10 + i}", daemon.dicom_port, headers[i % 3], results))
               for i in range(16)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        for pid in pids:
            peak[pid] = max(peak[pid], rss_kib(pid))
        time.sleep(0.02)
    growth_mb = max(peak[pid] - before[pid] for pid in pids) / 1024
    assert all(closed for closed, _, _ in results), "a peer announcing a huge PDU was not cut off"
    assert growth_mb <= 8, f"a listener process grew by {growth_mb:.1f} MB"
    assert echo_from("127.0.0.1", daemon.dicom_port)
    report(request, peers=len(results), listener_processes=len(pids), max_rss_growth_mb=round(growth_mb, 2),
           slowest_cut_off_s=round(max(seconds for _, seconds, _ in results), 2),
           most_bytes_sent_before_cut_off=max(sent for _, _, sent in results))


def _short_associations(host: str, port: int, count: int, failures: list) -> None:
    request_pdu = associate_rq()
    for _ in range(count):
        sock = connect_from(host, port)
        try:
            sock.sendall(request_pdu)
            if read_pdu_type(sock) != 0x02:  # A-ASSOCIATE-AC
                failures.append("not accepted")
                continue
            sock.sendall(RELEASE_RQ)
            if read_pdu_type(sock) != 0x06:  # A-RELEASE-RP
                failures.append("not released")
        except OSError as exc:
            failures.append(type(exc).__name__)
        finally:
            sock.close()


def test_many_short_associations_do_not_grow_the_listener(daemon, request):
    threads_n = 8
    failures: list = []
    _short_associations("127.0.0.3", daemon.dicom_port, 200, failures)  # warm-up: imports, pools, caches
    time.sleep(1)
    pids = listener_pids(daemon.proc.pid)
    before = {pid: rss_kib(pid) for pid in pids}
    started = time.monotonic()
    per_thread = SHORT_ASSOCIATIONS // threads_n
    threads = [threading.Thread(target=_short_associations,
                                args=(f"127.0.1.{i + 1}", daemon.dicom_port, per_thread, failures))
               for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    time.sleep(1)
    growth = {pid: (rss_kib(pid) - before[pid]) / 1024 for pid in pids}
    assert not failures, f"{len(failures)} of {per_thread * threads_n} associations failed: {set(failures)}"
    assert max(growth.values()) <= 20, growth
    report(request, associations=per_thread * threads_n, seconds=round(seconds, 1),
           associations_per_s=round(per_thread * threads_n / seconds, 1),
           rss_growth_mb_per_process=[round(g, 2) for g in growth.values()])

"""Quick checks of the listener against hostile peers and lying datasets (the long ones are in tests/reliability)."""

from __future__ import annotations

import logging
import socket
import time

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom.peer_log import PeerLog
from dicom.scu import echo
from tests.factories import radiograph
from tests.integration.listener_harness import AE_TITLE, running_listener
from tests.reliability.harness import closed_by_peer, encode, part10, read_pdu_type, store_files


def test_a_peer_that_sends_three_bytes_is_cut_off_after_the_acse_timeout(tmp_path):
    with running_listener(tmp_path, acse_timeout=1.0, max_associations=1) as harness:
        with socket.create_connection(("127.0.0.1", harness.port)) as sock:
            sock.sendall(b"\x01\x00\x00")
            started = time.monotonic()
            assert closed_by_peer(sock, 5)
            assert time.monotonic() - started < 3
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE, timeout=5) == 0  # its slot is free


def test_one_host_cannot_take_every_slot(tmp_path):
    with running_listener(tmp_path, max_associations=4) as harness:  # two per host
        idle = [socket.create_connection(("127.0.0.1", harness.port)) for _ in range(3)]
        try:
            assert closed_by_peer(idle[2], 2)  # the third from this host is closed at once
            ae = AE(ae_title="OTHER")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", harness.port, ae_title=AE_TITLE, bind_address=("127.0.0.2", 0))
            assert assoc.is_established
            assoc.release()
        finally:
            for sock in idle:
                sock.close()


def test_p_data_or_a_large_pdu_before_association_is_aborted_unread(tmp_path):
    with running_listener(tmp_path) as harness:
        for header in (b"\x04\x00\x00\x00\x00\x10", b"\x01\x00\x00\x01\x00\x01"):  # P-DATA; a 64 KiB + 1 RQ
            with socket.create_connection(("127.0.0.1", harness.port)) as sock:
                sock.sendall(header)
                assert read_pdu_type(sock, 5) == 0x07  # A-ABORT
                assert closed_by_peer(sock, 2)


def test_datasets_whose_encoding_or_pixels_lie_are_refused_with_the_status_that_says_why(tmp_path):
    paths = []
    for name, data, claimed in [
        ("implicit.dcm", encode(radiograph(seed=1), ImplicitVRLittleEndian), ExplicitVRLittleEndian),
        ("bits7.dcm", encode(_with(radiograph(seed=2), BitsAllocated=7), ExplicitVRLittleEndian), None),
        ("count.dcm", encode(_with(radiograph(seed=3), NumberOfStudyRelatedInstances="999999999999"),
                             ExplicitVRLittleEndian), None),
    ]:
        path = tmp_path / name
        path.write_bytes(part10(data, claimed_syntax=claimed or ExplicitVRLittleEndian))
        paths.append(path)
    with running_listener(tmp_path) as harness:
        assert store_files(harness.port, paths) == [0xC210, 0xA900, 0x0000]
        assert harness.rows() == 1


def _with(ds, **values):
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_peer_log_writes_a_burst_then_counts(caplog):
    log = logging.getLogger("test.peer_log")
    peers = PeerLog(log, burst=3, window=0.2)
    with caplog.at_level(logging.WARNING, logger="test.peer_log"):
        for n in range(10):
            peers.warning("10.0.0.9", "bad PDU %d", n)
        peers.warning("10.0.0.8", "another peer")
        time.sleep(0.25)
        peers.warning("10.0.0.9", "after the window")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["bad PDU 0", "bad PDU 1", "bad PDU 2"]
    assert "another peer" in lines and "after the window" in lines
    assert any("7 more log lines about 10.0.0.9" in line for line in lines)
    assert len(lines) == 7  # 3, the "counted" notice, the other peer, the summary, the next window's

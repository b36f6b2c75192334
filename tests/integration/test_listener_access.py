"""Who may associate: AE titles, hosts, the association limit, SOP classes, and TLS with client certificates."""

from __future__ import annotations

import socket
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicom.access import client_tls_context, parse_allowed, server_tls_context
from dicom.errors import AccessConfigError, AssociationFailed
from dicom.listener import Listener, ListenerConfig, StoreHandler
from dicom.scu import NO_CONTEXT, echo, send_datasets
from tests.factories import CR, DX, radiograph
from tests.integration.listener_harness import AE_TITLE, running_listener


def test_unknown_calling_ae_is_rejected_and_counted(tmp_path):
    with running_listener(tmp_path, allowed=parse_allowed("PACS,ORTHANC@127.0.0.1")) as harness:
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE, calling_ae="PACS") == 0
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE, calling_ae="ORTHANC") == 0
        with pytest.raises(AssociationFailed, match="calling AE title not recognised"):
            send_datasets("127.0.0.1", harness.port, AE_TITLE, "STRANGER", [radiograph()])
        assert harness.rows() == 0
        assert harness.refusals == ["calling_ae"]


def test_known_title_from_another_host_is_rejected(tmp_path):
    with running_listener(tmp_path, allowed=parse_allowed("PACS@10.20.30.40")) as harness:
        with pytest.raises(AssociationFailed, match="calling AE title not recognised"):
            echo("127.0.0.1", harness.port, called_ae=AE_TITLE, calling_ae="PACS")
        assert harness.refusals == ["host"]


def test_wrong_called_ae_is_rejected(tmp_path):
    with running_listener(tmp_path) as harness:
        with pytest.raises(AssociationFailed, match="called AE title not recognised"):
            echo("127.0.0.1", harness.port, called_ae="SOMEONE-ELSE")
        assert harness.refusals == ["called_ae"]
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0, "still serving"


def test_non_loopback_without_allow_list_refuses_to_start(tmp_path):
    listener = Listener(ListenerConfig(ae_title=AE_TITLE, host="0.0.0.0", port=0),
                        handler=StoreHandler(data_dir=tmp_path, sessions=None))
    with pytest.raises(AccessConfigError, match="RADTRIAGE_DICOM_ALLOW_ANY"):
        listener.start()
    assert not listener.running


def test_other_sop_classes_are_refused_at_negotiation(tmp_path):
    with running_listener(tmp_path, accepted_sop_classes=(CR,)) as harness:
        statuses = send_datasets("127.0.0.1", harness.port, AE_TITLE, "TESTSCU",
                                 [radiograph(sop_class=CR), radiograph(sop_class=DX)])
        assert statuses == [0x0000, NO_CONTEXT]
        # Refused contexts are routine (senders propose every class they might send): not refusals.
        assert harness.refusals == []
        assert harness.rows() == 1


def test_association_limit(tmp_path):
    with running_listener(tmp_path, max_associations=1) as harness:
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context(Verification)
        held = ae.associate("127.0.0.1", harness.port, ae_title=AE_TITLE)
        assert held.is_established
        try:
            with pytest.raises(AssociationFailed, match="association limit"):
                echo("127.0.0.1", harness.port, called_ae=AE_TITLE)
        finally:
            held.release()
        # The released association's thread ends a moment after the release: then the slot is free.
        deadline = time.monotonic() + 10
        while True:
            try:
                assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0
                break
            except AssociationFailed:
                assert time.monotonic() < deadline, "the slot was never freed after the release"
                time.sleep(0.1)
        assert "association_limit" in harness.refusals


def test_a_connection_closed_before_any_request_frees_its_slot_at_once(tmp_path):
    """Port probes (a load balancer's TCP check) connect and close: none may hold a slot of
    the association limit, or its listening thread, until the ACSE timeout."""
    with running_listener(tmp_path, max_associations=1) as harness:
        for _ in range(3):
            socket.create_connection(("127.0.0.1", harness.port)).close()
        deadline = time.monotonic() + 3  # far below the 30 s ACSE timeout
        # The accept loop may take a probe after the count was read: the slot is free once
        # an association is accepted, however the threads were scheduled.
        while True:
            try:
                assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE, timeout=5) == 0
                break
            except AssociationFailed:
                assert time.monotonic() < deadline, "a probe's association thread waits out the ACSE timeout"
                time.sleep(0.05)


# --- TLS -----------------------------------------------------------------------------

@pytest.fixture
def tls_listener(tmp_path, pki):
    context = server_tls_context(cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem",
                                 require_client_cert=True, stall_timeout=5)
    with running_listener(tmp_path, ssl_context=context) as harness:
        yield harness


def test_tls_with_client_certificate_stores(tls_listener, pki):
    client = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    assert echo("127.0.0.1", tls_listener.port, called_ae=AE_TITLE, tls=client) == 0
    assert send_datasets("127.0.0.1", tls_listener.port, AE_TITLE, "TLSSCU", [radiograph()], client) == [0]
    assert tls_listener.rows() == 1


def test_plain_association_is_refused_when_tls_is_required(tls_listener):
    with pytest.raises(AssociationFailed):
        echo("127.0.0.1", tls_listener.port, called_ae=AE_TITLE, timeout=5)
    assert tls_listener.rows() == 0


def test_tls_without_client_certificate_is_refused(tls_listener, pki):
    anonymous = client_tls_context(ca=pki / "ca.pem")
    with pytest.raises(AssociationFailed):
        echo("127.0.0.1", tls_listener.port, called_ae=AE_TITLE, tls=anonymous, timeout=5)


def test_a_silent_connection_does_not_block_other_senders(tls_listener, pki):
    client = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
    with socket.create_connection(("127.0.0.1", tls_listener.port)):  # connects, never says hello
        assert echo("127.0.0.1", tls_listener.port, called_ae=AE_TITLE, tls=client, timeout=5) == 0


def test_a_huge_announced_pdu_is_not_allocated_up_front(tmp_path):
    """6 bytes claiming a 4 GiB A-ASSOCIATE-RQ, from anyone: the listener only keeps what arrives."""
    import resource

    with running_listener(tmp_path) as harness:
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
        with socket.create_connection(("127.0.0.1", harness.port)) as sock:
            sock.sendall(b"\x01\x00\xff\xff\xff\xf0" + b"\x00" * 1000)
        assert echo("127.0.0.1", harness.port, called_ae=AE_TITLE) == 0
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 256 * 1024


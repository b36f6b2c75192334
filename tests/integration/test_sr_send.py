"""Sending the draft SR by C-STORE (``dicom.scu.send_sr``) to a real pynetdicom SCP on an ephemeral loopback port."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE, evt

from common.retry import Backoff
from dicom.access import client_tls_context
from dicom.errors import AssociationFailed, DestinationUnavailable, SendRefused
from dicom.scu import send_sr
from dicom.sr import build_draft_sr, draft_sr_uids
from scoring.draft_prompt import PROMPT_VERSION
from scoring.medgemma import Draft
from tests.factories import radiograph

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR (TID 1500 report)
CALLED = "PACS"


class Pacs:
    """A storage SCP that keeps what it receives and answers with ``status``."""

    def __init__(self, port: int = 0, *, status: int = 0x0000, syntaxes=None, require_ae: bool = False,
                 tls: ssl.SSLContext | None = None) -> None:
        self.received: list = []
        self.status = status
        ae = AE(ae_title=CALLED)
        ae.require_called_aet = require_ae
        if syntaxes:
            ae.add_supported_context(COMPREHENSIVE_SR, syntaxes)
        else:
            ae.add_supported_context(COMPREHENSIVE_SR)
        self.server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)], ssl_context=tls
        )
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        self.received.append(event.dataset)
        return self.status

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    server = Pacs()
    yield server
    server.close()


@pytest.fixture
def sr():
    source = radiograph(seed=5)
    draft = Draft(
        findings="No pneumothorax.", impression="Normal chest.", raw_text="", model_id="google/medgemma-1.5-4b-it",
        prompt_version=PROMPT_VERSION, prompt_tokens=300, new_tokens=12, seconds=0.4,
    )
    series_uid, sop_uid = draft_sr_uids(source.StudyInstanceUID, "draft-1")
    return build_draft_sr(
        [source], draft=draft, priority="URGENT", urgency_score=55.0, finding_scores={"pneumothorax": 0.02},
        model_version="abc", series_instance_uid=series_uid, sop_instance_uid=sop_uid,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(sr, port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> int:
    return send_sr(sr, host="127.0.0.1", port=port, called_ae=CALLED, calling_ae="RADTRIAGE", timeout=timeout, tls=tls)


def test_scp_receives_the_unverified_sr(pacs: Pacs, sr) -> None:
    assert send(sr, pacs.port) == 0x0000
    (got,) = pacs.received
    assert got.SOPInstanceUID == sr.SOPInstanceUID and got.StudyInstanceUID == sr.StudyInstanceUID
    assert got.VerificationFlag == "UNVERIFIED"


def test_scp_accepting_only_implicit_vr_still_gets_it(sr) -> None:
    server = Pacs(syntaxes=[ImplicitVRLittleEndian])
    try:
        assert send(sr, server.port) == 0x0000
        assert [d.SOPInstanceUID for d in server.received] == [sr.SOPInstanceUID]
    finally:
        server.close()


def test_destination_down_then_up_arrives_once(sr) -> None:
    """The worker's retry loop in miniature: every failed attempt stored nothing."""
    port = free_port()
    servers: list[Pacs] = []
    waits: list[float] = []
    backoff = Backoff(first=5.0, cap=600.0)

    def wait(seconds: float) -> None:  # the PACS comes back while we wait for the 3rd attempt
        waits.append(seconds)
        if len(waits) == 2:
            servers.append(Pacs(port))

    try:
        for attempt in range(5):
            started = time.monotonic()
            try:
                status = send(sr, port, timeout=2.0)
                break
            except DestinationUnavailable as exc:
                assert exc.retryable and "not reachable" in str(exc)
                assert time.monotonic() - started < 2.0  # a refused connection fails at once
                assert isinstance(exc.__cause__, AssociationFailed)  # one error tree: what failed, and why
                wait(backoff.seconds(attempt))
        assert status == 0x0000 and attempt == 2 and waits == [5.0, 10.0]
        assert [d.SOPInstanceUID for d in servers[0].received] == [sr.SOPInstanceUID]
    finally:
        for server in servers:
            server.close()


def test_hung_destination_times_out_without_delaying_other_sends(pacs: Pacs, sr) -> None:
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts the TCP connection, never answers the association request
    outcome: list[BaseException | int] = []

    def send_to_hung() -> None:
        try:
            outcome.append(send(sr, hung.getsockname()[1], timeout=1.5))
        except BaseException as exc:
            outcome.append(exc)

    try:
        started = time.monotonic()
        thread = threading.Thread(target=send_to_hung)
        thread.start()
        assert send(sr, pacs.port) == 0x0000  # another study's SR is not held up
        assert time.monotonic() - started < 1.5 and thread.is_alive()
        thread.join(timeout=10)
        assert not thread.is_alive() and time.monotonic() - started < 6
        assert isinstance(outcome[0], DestinationUnavailable)
    finally:
        hung.close()


@pytest.mark.parametrize(
    ("status", "error", "retryable"), [(0xA700, DestinationUnavailable, True), (0xC000, SendRefused, False)]
)
def test_failure_statuses_say_whether_to_retry(sr, status: int, error: type, retryable: bool) -> None:
    server = Pacs(status=status)
    try:
        with pytest.raises(error, match=f"0x{status:04X}") as caught:
            send(sr, server.port)
        assert caught.value.retryable is retryable
    finally:
        server.close()


def test_warning_status_counts_as_stored(sr) -> None:
    server = Pacs(status=0xB000)
    try:
        assert send(sr, server.port) == 0xB000
    finally:
        server.close()


def test_wrong_called_ae_is_a_rejected_association(sr) -> None:
    server = Pacs(require_ae=True)
    try:
        with pytest.raises(DestinationUnavailable, match="rejected"):
            send_sr(sr, host="127.0.0.1", port=server.port, called_ae="OTHER", timeout=5.0)
        assert server.received == []
    finally:
        server.close()


def pacs_tls(pki) -> ssl.SSLContext:
    """A PACS's own TLS: its certificate, and client certificates checked against the CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(certfile=pki / "server.pem", keyfile=pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_sr_export_over_tls(sr, pki) -> None:
    server = Pacs(tls=pacs_tls(pki))
    try:
        client = client_tls_context(ca=pki / "ca.pem", cert=pki / "client.pem", key=pki / "client.key")
        assert send(sr, server.port, tls=client) == 0x0000
        (got,) = server.received
        assert got.SOPInstanceUID == sr.SOPInstanceUID and got.VerificationFlag == "UNVERIFIED"
    finally:
        server.close()


@pytest.mark.parametrize("client", ["plain", "no certificate"])
def test_a_tls_destination_refusing_the_connection_is_unavailable(sr, pki, client) -> None:
    server = Pacs(tls=pacs_tls(pki))
    try:
        tls = None if client == "plain" else client_tls_context(ca=pki / "ca.pem")
        with pytest.raises(DestinationUnavailable, match="not reachable, TLS refused or aborted"):
            send(sr, server.port, timeout=3.0, tls=tls)
        assert server.received == []
    finally:
        server.close()

"""pynetdicom's association server, with the received image data copied less.

Receiving is most of the listener's CPU, and on a 10 MB radiograph nearly all of it is
copying. pynetdicom reads a PDU in 4 KiB ``recv`` calls appended to a growing buffer
(about 2,500 calls per radiograph, under the GIL), then copies each P-DATA-TF PDU three
more times while taking it apart (to ``bytes``, to its item list, to each fragment) before
the DIMSE layer copies the fragment into the dataset buffer. Here a PDU is received
straight into a buffer of its announced length, and a P-DATA-TF's fragments are views of
that buffer, so the DIMSE layer's copy is the only one. Everything else (negotiation,
state machine, other PDUs, TLS) is pynetdicom's own; ``benchmarks/ingest.py`` measures it.
"""

from __future__ import annotations

import collections
import logging
import socket
import sys
import threading
import time

from pynetdicom import evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

from dicom.peer_log import limit_per_peer

# A peer's protocol errors: one line each (``extra={"peer": address}``), rate-limited per address.
log = limit_per_peer(logging.getLogger(__name__))


class BulkReadSocket(AssociationSocket):
    """An ``AssociationSocket`` whose ``recv`` fills one buffer of the requested length.

    Every read is bounded: ``deadline`` (a ``time.monotonic()`` value) is when the PDU being
    read must have arrived whole, ``stall`` how long any one read may wait for a byte. Past
    either, ``TimeoutError`` is raised (pynetdicom's own reads block until the peer closes,
    so a peer that sent 3 bytes held its association slot for as long as it liked).
    """

    deadline: float | None = None
    stall: float | None = None
    _timeout: float | None = None  # what the socket was last given (accepted sockets block: None)

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer only when the peer closes the connection first)."""
        buffer = bytearray(nr_bytes)
        with memoryview(buffer) as view:
            received = self.recv_into_all(view)
        if received < nr_bytes:  # closed early: pynetdicom sees the short PDU and aborts
            del buffer[received:]
        return buffer

    def recv_into_all(self, view: memoryview) -> int:
        """Fill ``view``; returns the bytes received (fewer only when the peer closed first).

        Raises
        ------
        TimeoutError
            The bytes did not arrive within ``deadline`` or ``stall``.
        """
        received, wanted = 0, len(view)
        while received < wanted:
            wait = self._wait()
            if wait != self._timeout:  # an established association's stays the same: set once
                self.socket.settimeout(wait)
                self._timeout = wait
            count = self.socket.recv_into(view[received:], wanted - received)
            if not count:
                break
            received += count
        return received

    def _wait(self) -> float | None:
        if self.deadline is None:
            return self.stall
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the PDU did not arrive in time")
        return left if self.stall is None else min(left, self.stall)


_A_ASSOCIATE_RQ, _P_DATA_TF, _A_ABORT = 0x01, 0x04, 0x07
_P_DATA_TF_RECEIVED = "Evt10"  # PS3.8 9.2: the state machine's event for a received P-DATA-TF
_PDU_TYPES = range(0x01, 0x08)  # A-ASSOCIATE-RQ .. A-ABORT (PS3.8 9.3.1)
# States once an association is accepted (PS3.8 9.2.1): its peer passed the access policy.
_ACCEPTED = frozenset({"Sta6", "Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12"})
# Before that nobody is checked: a larger PDU (an A-ASSOCIATE-RQ is a few hundred bytes; one
# proposing every storage class with every syntax stays far below this) is refused unread.
MAX_UNACCEPTED_PDU = 64 * 1024
# Bytes allocated before they arrive, for any PDU but an accepted association's P-DATA-TF.
_PREALLOCATE_UNTRUSTED = 64 * 1024
# A-ABORT reasons (PS3.8 9.3.8): unrecognized PDU, unexpected PDU, invalid PDU parameter value.
_UNRECOGNIZED_PDU, _UNEXPECTED_PDU, _INVALID_PARAMETER = 0x01, 0x02, 0x06
# Seconds a pre-association read may take when no ACSE timeout is set.
_DEFAULT_ACSE_SECONDS = 30.0


class PDataViewDUL(DULServiceProvider):
    """A ``DULServiceProvider`` reading each PDU into one buffer, P-DATA-TF fragments as views."""

    def _read_pdu_data(self) -> None:
        # As pynetdicom's own, except that the body is received into the PDU's buffer
        # instead of being appended to its 6-byte header, every read is bounded in time, and
        # a PDU is checked against what the peer may send before its body is read. The
        # state machine events are the same: Evt17 for a connection closed mid-PDU, Evt19
        # for an unknown or invalid PDU.
        state = self.state_machine.current_state
        if state == "Sta13":
            # We aborted or rejected and wait for the peer to close: whatever it still sends
            # (the rest of its garbage) ends the connection now, without a line per 6 bytes.
            self.socket.close()
            return
        accepted = state in _ACCEPTED
        self._bound_reads(accepted)
        try:
            header = self.socket.recv(6)
        except OSError as exc:
            self._cut_off(None, "connection closed or stalled before a PDU header (%s)", type(exc).__name__)
            return
        if len(header) < 6:
            self._connection_closed()
            return
        pdu_type, length = header[0], int.from_bytes(header[2:6], "big")
        if pdu_type not in _PDU_TYPES:
            self._cut_off(_UNRECOGNIZED_PDU, "unknown PDU type 0x%02X received", pdu_type)
            return
        if not accepted and pdu_type not in (_A_ASSOCIATE_RQ, _A_ABORT):
            self._cut_off(_UNEXPECTED_PDU, "PDU type 0x%02X before an association was accepted", pdu_type)
            return
        limit = self._largest_pdu(accepted)
        if length > limit:
            self._cut_off(_INVALID_PARAMETER, "PDU of %d bytes refused (%d allowed %s)", length, limit,
                          "by the negotiated maximum" if accepted else "before an association is accepted")
            return
        try:
            pdu, received = self._receive_body(header, length, accepted)
        except OSError as exc:
            self._cut_off(None, "connection closed or stalled in the middle of a PDU (%s)", type(exc).__name__)
            return
        if received < length:
            self._warn("connection closed in the middle of a PDU (%d of %d bytes)", received, length)
            self._connection_closed()
            return
        try:
            decoded, event = self._decode_pdu(pdu)
        except Exception as exc:  # noqa: BLE001 - whatever a malformed PDU makes pynetdicom's decoder raise
            self.event_queue.put("Evt19")
            address = str(self.assoc.requestor.address)
            log.warning("DICOM peer %s: invalid PDU received (%s)", address, type(exc).__name__, extra={"peer": address})
            return
        self.event_queue.put(event)
        self._recv_pdu.put(decoded)

    def _bound_reads(self, accepted: bool) -> None:
        """Before acceptance a whole PDU must arrive within the ACSE timeout; after it, no
        read may wait longer than the network timeout."""
        sock = self.socket
        if accepted:
            sock.deadline, sock.stall = None, self.assoc.network_timeout
        else:
            sock.deadline = time.monotonic() + (self.assoc.acse_timeout or _DEFAULT_ACSE_SECONDS)
            sock.stall = None

    def _largest_pdu(self, accepted: bool) -> int:
        if not accepted:
            return MAX_UNACCEPTED_PDU
        # What we announced (PS3.8 D.1: the largest P-DATA-TF variable field we receive); 0 is unlimited.
        return self.assoc.acceptor.maximum_length or sys.maxsize

    def _warn(self, message: str, *args) -> None:
        address = str(self.assoc.requestor.address)
        log.warning("DICOM peer %s: " + message, address, *args, extra={"peer": address})

    def _cut_off(self, abort_reason: int | None, message: str, *args) -> None:
        """Log one line, send an A-ABORT when ``abort_reason`` is given, and close the connection now."""
        self._warn(message, *args)
        sock = self.socket.socket
        if abort_reason is not None and sock is not None:
            try:  # best effort, never waiting: the peer may not be reading
                sock.send(bytes((_A_ABORT, 0, 0, 0, 0, 4, 0, 0, 0x02, abort_reason)), socket.MSG_DONTWAIT)
            except OSError:
                pass
        self.socket.close()  # Evt17: the state machine ends the association
        self._wake_acceptor()

    def _connection_closed(self) -> None:
        self.event_queue.put("Evt17")
        self._wake_acceptor()

    def _wake_acceptor(self) -> None:
        if self.state_machine.current_state == "Sta2":
            # Closed before asking for an association (a port probe, a failed TLS handshake):
            # the acceptor waiting for the A-ASSOCIATE-RQ gets its "nothing came" at once
            # instead of after the ACSE timeout, and with it the association limit's slot.
            self.to_user_queue.put(None)

    def _receive_body(self, header: bytes, length: int, accepted: bool) -> tuple[bytearray, int]:
        """The PDU (header included) and how many body bytes arrived.

        An accepted association's P-DATA-TF is received into one buffer of its announced
        length (bounded by the negotiated maximum); any other PDU's buffer grows as its
        bytes actually arrive, so a 6-byte header cannot make us allocate more than
        ``_PREALLOCATE_UNTRUSTED``.
        """
        whole = header[0] == _P_DATA_TF and accepted
        first = length if whole else min(length, _PREALLOCATE_UNTRUSTED)
        pdu = bytearray(6 + first)
        pdu[:6] = header
        with memoryview(pdu) as view:
            received = self.socket.recv_into_all(view[6:])
        while received == len(pdu) - 6 < length:
            more = self.socket.recv(min(length - received, max(received, _PREALLOCATE_UNTRUSTED)))
            if not more:
                break
            pdu += more
            received += len(more)
        return pdu, received

    def _decode_pdu(self, bytestream: bytearray):
        # Anyone listening for raw received bytes gets pynetdicom's own path, copies and all.
        if bytestream[0] != _P_DATA_TF or self.assoc.get_handlers(evt.EVT_DATA_RECV):
            return super()._decode_pdu(bytestream)
        pdu = P_DATA_TF()
        pdu.presentation_data_value_items = list(_pdv_items(memoryview(bytestream)[6:]))
        evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        return pdu, _P_DATA_TF_RECEIVED


def _pdv_items(items: memoryview):
    """Each Presentation Data Value Item (PS3.8 9.3.5.1): 4-byte length, context ID, value."""
    offset = 0
    while offset < len(items):
        if offset + 5 > len(items):
            raise ValueError("truncated PDV item header")
        length = int.from_bytes(items[offset:offset + 4], "big")
        end = offset + 4 + length
        if length < 1 or end > len(items):
            raise ValueError("PDV item length does not match the PDU")
        item = PresentationDataValueItem()
        item.presentation_context_id = items[offset + 4]
        item.presentation_data_value = items[offset + 5:end]  # message control header + fragment
        yield item
        offset = end


class _BulkReadRequestHandler(RequestHandler):
    assoc = None  # the association this connection started, once it has

    def _create_association(self):
        assoc = self.assoc = super()._create_association()
        if isinstance(self.server, HandedOverServer):
            self.server.track(assoc, self.client_address)
        # The socket and upper layer pynetdicom just made, given the reads above; nothing
        # else about them differs (as pynetdicom itself re-classes decoded DIMSE messages).
        assoc.dul.socket.__class__ = BulkReadSocket
        assoc.dul.__class__ = PDataViewDUL
        return assoc


class BulkReadServer(ThreadedAssociationServer):
    """``ThreadedAssociationServer`` whose associations use ``BulkReadSocket``.

    ``per_host_limit`` (0: none) caps the connections one host may hold open at once, so a
    hung modality or a scanner cannot take every association slot: a connection past it is
    closed as soon as it is accepted, with one (rate-limited) log line.
    """

    # Connection threads wait for their association (below); they must not hold up a stop.
    daemon_threads = True
    block_on_close = False
    per_host_limit = 0

    def __init__(self, *args, **kwargs) -> None:
        self._hosts: collections.Counter[str] = collections.Counter()
        self._hosts_lock = threading.Lock()
        super().__init__(*args, request_handler=_BulkReadRequestHandler, **kwargs)

    def verify_request(self, request, client_address) -> bool:
        host = str(client_address[0])
        with self._hosts_lock:
            admitted = not self.per_host_limit or self._hosts[host] < self.per_host_limit
            if admitted:
                self._hosts[host] += 1
        if not admitted:
            log.warning("DICOM connection from %s closed: that host holds %d already, the most one host may",
                        host, self.per_host_limit, extra={"peer": host})
        return admitted

    def finish_request(self, request, client_address) -> None:
        try:
            assoc = self.RequestHandlerClass(request, client_address, self).assoc
            if assoc is not None:
                assoc.join()  # the host's connection is counted until its association ends
        finally:
            with self._hosts_lock:
                host = str(client_address[0])
                self._hosts[host] -= 1
                if self._hosts[host] <= 0:
                    del self._hosts[host]

    def handle_error(self, request, client_address) -> None:
        # socketserver's own prints a traceback: a peer's failure is one line.
        exc = sys.exc_info()[1]
        log.warning("DICOM connection from %s ended before an association (%s)", client_address[0],
                    type(exc).__name__, extra={"peer": str(client_address[0])})


class HandedOverServer(BulkReadServer):
    """Serves connections accepted by another process (``dicom.netseam.pool``): it binds nothing.

    ``process_request(sock, address)`` runs one connection's association in its own thread, TLS
    handshake included, exactly as a connection accepted here would run; ``on_closed`` is
    called with the address exactly once when that connection is done, however it ended.
    """

    on_closed = staticmethod(lambda _address: None)

    def server_bind(self) -> None:
        self._open: dict = {}  # association -> client address, until its connection is closed
        self._tracking_lock = threading.Lock()

    def server_activate(self) -> None:
        self.socket.close()  # the unbound socket socketserver made; connections come from elsewhere

    def shutdown(self) -> None:
        # No serve_forever loop runs here, so there is none to wait for.
        self.server_close()
        self.ae._servers.remove(self)

    def track(self, assoc, client_address) -> None:
        """Note a connection's association as it is created, before it runs."""
        with self._tracking_lock:
            self._open[assoc] = client_address

    def closed(self, assoc) -> None:
        """The association's connection closed (``EVT_CONN_CLOSE``), or its thread ended."""
        with self._tracking_lock:
            address = self._open.pop(assoc, None)
        if address is not None:
            self.on_closed(address)

    def finish_request(self, request, client_address) -> None:
        assoc = None
        try:
            # pynetdicom wraps in its accept loop; here the handshake runs in this connection's thread.
            if self.ssl_context:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            assoc = self.RequestHandlerClass(request, client_address, self).assoc
            if assoc is not None:
                # Usually EVT_CONN_CLOSE reported it already; this covers every other way out.
                assoc.join()
        finally:
            if assoc is None:
                self.on_closed(client_address)
            else:
                self.closed(assoc)


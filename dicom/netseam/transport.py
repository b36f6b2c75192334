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

import logging
import sys
import threading

from pynetdicom import evt
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.transport import (
    AssociationSocket,
    RequestHandler,
    ThreadedAssociationServer,
)

log = logging.getLogger(__name__)


class BulkReadSocket(AssociationSocket):
    """An ``AssociationSocket`` whose ``recv`` fills one buffer of the requested length."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer only when the peer closes the connection first)."""
        buffer = bytearray(nr_bytes)
        with memoryview(buffer) as view:
            received = self.recv_into_all(view)
        if received < nr_bytes:  # closed early: pynetdicom sees the short PDU and aborts
            del buffer[received:]
        return buffer

    def recv_into_all(self, view: memoryview) -> int:
        """Fill ``view``; returns the bytes received (fewer only when the peer closed first)."""
        received, wanted = 0, len(view)
        while received < wanted:
            count = self.socket.recv_into(view[received:], wanted - received)
            if not count:
                break
            received += count
        return received


_P_DATA_TF = 0x04
_P_DATA_TF_RECEIVED = "Evt10"  # PS3.8 9.2: the state machine's event for a received P-DATA-TF


_PDU_TYPES = range(0x01, 0x08)  # A-ASSOCIATE-RQ .. A-ABORT (PS3.8 9.3.1)
# Bytes allocated up front for a PDU body: an established association's data, and anything else.
_PREALLOCATE_MAX = 64 * 1024 * 1024
_PREALLOCATE_UNTRUSTED = 64 * 1024


class PDataViewDUL(DULServiceProvider):
    """A ``DULServiceProvider`` reading each PDU into one buffer, P-DATA-TF fragments as views."""

    def _read_pdu_data(self) -> None:
        # As pynetdicom's own, except that the body is received into the PDU's buffer
        # instead of being appended to its 6-byte header. The state machine events are the
        # same: Evt17 for a connection closed mid-PDU, Evt19 for an unknown or invalid PDU.
        try:
            header = self.socket.recv(6)
        except OSError as exc:
            log.warning("connection closed before a PDU header (%s)", type(exc).__name__)
            self._connection_closed()
            return
        if len(header) < 6:
            self._connection_closed()
            return
        pdu_type, length = header[0], int.from_bytes(header[2:6], "big")
        if pdu_type not in _PDU_TYPES:
            log.warning("unknown PDU type 0x%02X received", pdu_type)
            self.event_queue.put("Evt19")
            return
        try:
            pdu, received = self._receive_body(header, length)
        except OSError as exc:
            log.warning("connection closed in the middle of a PDU (%s)", type(exc).__name__)
            self._connection_closed()
            return
        if received < length:
            log.warning("connection closed in the middle of a PDU (%d of %d bytes)", received, length)
            self._connection_closed()
            return
        try:
            decoded, event = self._decode_pdu(pdu)
        except Exception as exc:
            log.warning("invalid PDU received (%s)", type(exc).__name__)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(decoded)

    def _connection_closed(self) -> None:
        self.event_queue.put("Evt17")
        if self.state_machine.current_state == "Sta2":
            # Closed before asking for an association (a port probe, a failed TLS handshake):
            # the acceptor waiting for the A-ASSOCIATE-RQ gets its "nothing came" at once
            # instead of after the ACSE timeout, and with it the association limit's slot.
            self.to_user_queue.put(None)

    def _receive_body(self, header: bytes, length: int) -> tuple[bytearray, int]:
        """The PDU (header included) and how many body bytes arrived.

        The announced length is only trusted as far as an established association's
        P-DATA-TF goes, and then to ``_PREALLOCATE_MAX``: beyond that the buffer grows as
        bytes actually arrive, so a 6-byte header cannot make us allocate gigabytes.
        """
        established = header[0] == _P_DATA_TF and self.state_machine.current_state == "Sta6"
        first = min(length, _PREALLOCATE_MAX if established else _PREALLOCATE_UNTRUSTED)
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
    """``ThreadedAssociationServer`` whose associations use ``BulkReadSocket``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, request_handler=_BulkReadRequestHandler, **kwargs)


class HandedOverServer(BulkReadServer):
    """Serves connections accepted by another process (``dicom.netseam.pool``): it binds nothing.

    ``process_request(sock, address)`` runs one connection's association in its own thread, TLS
    handshake included, exactly as a connection accepted here would run; ``on_closed`` is
    called with the address exactly once when that connection is done, however it ended.
    """

    # Connection threads wait for their association; they must not hold up the member's exit.
    daemon_threads = True
    block_on_close = False
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

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        log.warning("connection from %s ended before an association (%s)", client_address[0], type(exc).__name__)

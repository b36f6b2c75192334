"""pynetdicom's association server, reading each PDU from the socket in one pass.

pynetdicom reads a PDU in 4 KiB ``recv`` calls appended to a growing buffer: about 2,500
calls and copies, under the GIL, for each 10 MB radiograph. With four associations at once
that loop alone doubled the listener's CPU per instance (``benchmarks/ingest.py``). Here
the PDU's bytes are received straight into a buffer of their announced length; everything
else (negotiation, state machine, TLS) is pynetdicom's own.
"""

from __future__ import annotations

import logging
import socket
import sys

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)


class BulkReadSocket(AssociationSocket):
    """An ``AssociationSocket`` whose ``recv`` fills one buffer of the requested length."""

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes`` (fewer only when the peer closes the connection first)."""
        buffer = bytearray(nr_bytes)
        received = 0
        with memoryview(buffer) as view:
            while received < nr_bytes:
                count = self.socket.recv_into(view[received:], nr_bytes - received)
                if not count:
                    break
                received += count
        if received < nr_bytes:  # closed early: pynetdicom sees the short PDU and aborts
            del buffer[received:]
        return buffer


class _BulkReadRequestHandler(RequestHandler):
    def _create_association(self):
        assoc = super()._create_association()
        # The socket pynetdicom just made, given the bulk read (nothing else differs).
        assoc.dul.socket.__class__ = BulkReadSocket
        return assoc


class BulkReadServer(ThreadedAssociationServer):
    """``ThreadedAssociationServer`` whose associations use ``BulkReadSocket``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, request_handler=_BulkReadRequestHandler, **kwargs)


class HandedOverServer(BulkReadServer):
    """Serves connections accepted by another process (``dicom.pool``): it binds nothing.

    ``serve(sock, address)`` runs one connection's association in its own thread, TLS
    handshake included, exactly as a connection accepted here would run.
    """

    def server_bind(self) -> None:
        pass

    def server_activate(self) -> None:
        self.socket.close()  # the unbound socket socketserver made; connections come from elsewhere

    def shutdown(self) -> None:
        # No serve_forever loop runs here, so there is none to wait for.
        self.server_close()
        self.ae._servers.remove(self)

    def serve(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self.process_request(sock, address)

    def finish_request(self, request, client_address) -> None:
        # pynetdicom wraps in its accept loop; here the handshake runs in this connection's thread.
        if self.ssl_context:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        log.warning("connection from %s ended before an association (%s)", client_address[0], type(exc).__name__)

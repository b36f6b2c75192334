"""pynetdicom's association server, reading each PDU from the socket in one pass.

pynetdicom reads a PDU in 4 KiB ``recv`` calls appended to a growing buffer: about 2,500
calls and copies, under the GIL, for each 10 MB radiograph. With four associations at once
that loop alone doubled the listener's CPU per instance (``benchmarks/ingest.py``). Here
the PDU's bytes are received straight into a buffer of their announced length; everything
else (negotiation, state machine, TLS) is pynetdicom's own.
"""

from __future__ import annotations

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer


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

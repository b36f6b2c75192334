"""Starting the fast-path association servers and registering them with their AE."""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable

from pynetdicom import AE, evt

from dicom.netseam.transport import BulkReadServer, HandedOverServer


def serve_in_background(ae: AE, address: tuple[str, int], *, evt_handlers: list,
                        ssl_context: ssl.SSLContext | None, per_host_limit: int = 0) -> BulkReadServer:
    """Bind ``address`` and serve it in a daemon thread, as ``AE.start_server(block=False)`` does.

    ``per_host_limit`` (0: none) caps the connections one host may hold open at once.

    Raises
    ------
    OSError
        The address cannot be bound.
    """
    server = ae.make_server(address, evt_handlers=evt_handlers, ssl_context=ssl_context,
                            server_class=BulkReadServer)
    server.per_host_limit = per_host_limit
    # As ``AE.start_server`` does: ``AE.shutdown`` stops the servers in this list, and a
    # server removes itself from it when it shuts down.
    ae._servers.append(server)
    threading.Thread(target=server.serve_forever, name="dicom-listener", daemon=True).start()
    return server


def serve_handed_over(ae: AE, address: tuple[str, int], *, evt_handlers: list, ssl_context: ssl.SSLContext | None,
                      on_closed: Callable[[tuple[str, int]], None]) -> HandedOverServer:
    """A server for connections another process accepted (``dicom.netseam.pool``); it binds nothing.

    ``on_closed(address)`` is called exactly once when each connection is done, however it ended.
    """
    server = ae.make_server(address, evt_handlers=evt_handlers, ssl_context=ssl_context,
                            server_class=HandedOverServer)
    server.on_closed = on_closed
    # A member admits what the pool admits: the pool's count ends with each connection,
    # while pynetdicom's lasts as long as the association's thread, which can outlive its
    # connection by the ACSE timeout (a failed TLS handshake leaves it waiting for an
    # A-ASSOCIATE-RQ) and would refuse connections the pool let in.
    ae.maximum_associations = sys.maxsize
    server.bind(evt.EVT_CONN_CLOSE, lambda event: server.closed(event.assoc))
    ae._servers.append(server)
    return server

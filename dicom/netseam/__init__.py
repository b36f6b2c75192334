"""The one seam over pynetdicom's internals: the listener's fast path and its process pool.

Known to work with pynetdicom 3.0.x (tested with 3.0.4); ``pyproject.toml`` pins
``pynetdicom>=3.0,<3.1`` and ``tests/unit/test_pynetdicom_seam.py`` fails, naming the
internal, when one of those below changes shape. ``RADTRIAGE_DICOM_PLAIN_PYNETDICOM=true``
serves with pynetdicom's stock server and sockets instead, in one process, using nothing
listed here.

What is here:

- ``transport``: PDUs received into one buffer, P-DATA-TF fragments as views of it
  (``PDataViewDUL``, ``BulkReadSocket``), the server classes that use them, and the one
  taking connections accepted by another process (``HandedOverServer``);
- ``servers``: starting those servers and registering them with their AE;
- ``pool``: several listener processes behind one port (connections passed by ``SCM_RIGHTS``).

Not here: writing received files past the page cache (``dicom.direct_write``) relies on the
operating system, not on pynetdicom, and falls back to a plain write on its own; it sits
beside ``dicom.storage``, its only user.

pynetdicom internals relied on (module: name: what for):

- ``ae``: ``ApplicationEntity._servers``: the list of servers ``AE.shutdown`` stops; a
  server started here joins it as ``AE.start_server`` does, and leaves it on shutdown.
- ``transport``: ``RequestHandler._create_association()``: returns the new acceptor
  association; overridden to swap its socket's and DUL's classes (``__class__``) for ours.
- ``transport``: ``AssociationSocket.socket`` (the connected ``socket.socket``) and
  ``AssociationSocket.recv(nr_bytes)``: ``BulkReadSocket`` reads into one buffer, every read
  bounded in time (``socket.settimeout`` per read); ``AssociationSocket.close()`` shuts the
  connection and queues Evt17 (a peer cut off: oversized or unexpected PDU, stalled read).
- ``association``: ``Association.acceptor.maximum_length`` (the maximum PDU we announced),
  ``Association.requestor.address``, ``acse_timeout`` and ``network_timeout``: the bounds a
  received PDU is checked against before its body is read.
- ``transport``: ``ThreadedAssociationServer(..., request_handler=)``, its ``ae``,
  ``ssl_context``, ``process_request``, ``finish_request``, ``server_bind``,
  ``server_activate``, ``shutdown`` and ``server_close``: ``HandedOverServer`` runs
  connections it did not accept, wrapping TLS in the connection's own thread.
- ``dul``: ``DULServiceProvider._read_pdu_data()`` (replaced),
  ``_decode_pdu(bytestream) -> (pdu, event)`` (bypassed for P-DATA-TF), and its
  ``socket``, ``event_queue``, ``_recv_pdu``, ``to_user_queue``, ``state_machine`` and
  ``assoc`` attributes; ``Association.dul`` reaches it.
- ``dul``: a ``None`` put on ``to_user_queue`` makes the acceptor's wait for the
  A-ASSOCIATE-RQ (``receive_pdu``) end as a timeout: a connection closed in Sta2 frees its
  thread and its association slot at once.
- ``fsm``: state names ``"Sta2"`` (awaiting A-ASSOCIATE-RQ), ``"Sta6"`` to ``"Sta12"``
  (accepted: established or releasing), ``"Sta13"`` (awaiting the peer's close after our
  abort or rejection: more bytes close the connection at once),
  events ``"Evt10"`` (P-DATA-TF received), ``"Evt17"`` (connection closed), ``"Evt19"``
  (invalid PDU), as ``StateMachine.current_state`` and the event queue spell them.
- ``pdu`` / ``pdu_items``: ``P_DATA_TF.presentation_data_value_items`` and
  ``PresentationDataValueItem.presentation_context_id`` / ``presentation_data_value``
  (a memoryview here, where pynetdicom has bytes).
- ``events``: ``trigger(assoc, EVT_PDU_RECV, {"pdu": ...})`` and
  ``Association.get_handlers(EVT_DATA_RECV)``: the fast path keeps both events' meaning.
- ``ae``: ``maximum_associations``: a pool member admits what the pool admits, because
  pynetdicom counts an association's thread, which can outlive its connection.

Outside this seam the listener and the SCU use public API only: events, ``AE.make_server``
and ``start_server``, ``Association.acse.send_reject`` and ``kill`` from ``EVT_REQUESTED``,
``event.request.DataSet`` (a ``BytesIO``), and the documented option
``pynetdicom._config.STORE_SEND_CHUNKED_DATASET`` (``dicom.scu``); the seam test checks
those too.
"""

from dicom.netseam.pool import ListenerPool, serve_member
from dicom.netseam.servers import serve_handed_over, serve_in_background
from dicom.netseam.transport import BulkReadServer, HandedOverServer

KNOWN_GOOD_PYNETDICOM = "3.0"

__all__ = ["KNOWN_GOOD_PYNETDICOM", "BulkReadServer", "HandedOverServer", "ListenerPool", "serve_handed_over",
           "serve_in_background", "serve_member"]

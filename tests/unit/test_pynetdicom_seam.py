"""The pynetdicom internals ``dicom.netseam`` relies on still have the shape it expects.

Each test names one internal; a failure says which one changed, on which pynetdicom, and
that the seam must be reviewed before that version is used.
"""

from __future__ import annotations

import inspect
import queue
import re
import socket
import sys
from pathlib import Path

import pynetdicom
import pytest
from pynetdicom import AE, _config, evt, fsm
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from dicom.netseam import KNOWN_GOOD_PYNETDICOM
from dicom.netseam.transport import _P_DATA_TF_RECEIVED, BulkReadSocket, PDataViewDUL

REPO = Path(__file__).resolve().parents[2]


def changed(internal: str, detail: str) -> str:
    return (f"pynetdicom {pynetdicom.__version__}: {internal} changed shape ({detail}). dicom/netseam relies on it "
            "(its docstring lists every internal it uses): review the seam before using this pynetdicom; "
            "RADTRIAGE_DICOM_PLAIN_PYNETDICOM=true serves without it meanwhile.")


def params(function) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


def acceptor() -> Association:
    return Association(AE(), "acceptor")


def test_the_installed_pynetdicom_is_a_version_the_seam_is_known_to_work_with():
    assert re.match(rf"{re.escape(KNOWN_GOOD_PYNETDICOM)}\.\d+$", pynetdicom.__version__), (
        f"pynetdicom {pynetdicom.__version__} is not {KNOWN_GOOD_PYNETDICOM}.x, the series dicom/netseam is known "
        "to work with: review the seam (its docstring lists the internals), then raise KNOWN_GOOD_PYNETDICOM and "
        "the pin in pyproject.toml")


def test_ae_servers_list():
    ae = AE()
    assert isinstance(getattr(ae, "_servers", None), list), changed("ApplicationEntity._servers", "no longer a list")
    assert "server_class" in params(AE.make_server), changed("ApplicationEntity.make_server", "no server_class")
    assert {"block", "ssl_context", "evt_handlers"} <= set(params(AE.start_server)), \
        changed("ApplicationEntity.start_server", f"parameters are now {params(AE.start_server)}")
    ae.maximum_associations = sys.maxsize
    assert ae.maximum_associations == sys.maxsize, changed("ApplicationEntity.maximum_associations", "not kept")


def test_request_handler_create_association():
    method = getattr(RequestHandler, "_create_association", None)
    assert callable(method) and params(method) == [], \
        changed("transport.RequestHandler._create_association", "missing or takes arguments")
    assert "assoc.set_socket" in inspect.getsource(method), \
        changed("transport.RequestHandler._create_association", "no longer gives the association its socket")


def test_association_socket_socket_and_recv():
    ours, theirs = socket.socketpair()
    try:
        sock = AssociationSocket(acceptor(), client_socket=ours)
        assert sock.socket is ours, changed("transport.AssociationSocket.socket", "not the connected socket")
        assert params(AssociationSocket.recv) == ["nr_bytes"], \
            changed("transport.AssociationSocket.recv", f"parameters are now {params(AssociationSocket.recv)}")
        sock.__class__ = BulkReadSocket  # the class swap of _BulkReadRequestHandler
    finally:
        ours.close()
        theirs.close()


def test_threaded_association_server():
    assert "request_handler" in params(ThreadedAssociationServer.__init__), \
        changed("transport.ThreadedAssociationServer", "no request_handler parameter")
    for name in ("process_request", "finish_request", "server_bind", "server_activate", "shutdown", "server_close",
                 "handle_error", "serve_forever", "bind"):
        assert callable(getattr(ThreadedAssociationServer, name, None)), \
            changed(f"transport.ThreadedAssociationServer.{name}", "missing")
    assert params(ThreadedAssociationServer.process_request) == ["request", "client_address"], \
        changed("transport.ThreadedAssociationServer.process_request", "parameters differ")
    assert isinstance(inspect.getattr_static(ThreadedAssociationServer, "ssl_context", None), property), \
        changed("transport.ThreadedAssociationServer.ssl_context", "no longer a property")


def test_dul_service_provider_methods_and_attributes():
    assert params(DULServiceProvider._read_pdu_data) == [], \
        changed("dul.DULServiceProvider._read_pdu_data", "missing or takes arguments")
    assert params(DULServiceProvider._decode_pdu) == ["bytestream"], \
        changed("dul.DULServiceProvider._decode_pdu", "parameters differ")
    assoc = acceptor()
    dul = assoc.dul
    assert isinstance(dul, DULServiceProvider), changed("association.Association.dul", "not a DULServiceProvider")
    for name in ("socket", "event_queue", "_recv_pdu", "to_user_queue", "state_machine", "assoc"):
        assert hasattr(dul, name), changed(f"dul.DULServiceProvider.{name}", "missing")
    for name in ("event_queue", "_recv_pdu", "to_user_queue"):
        assert isinstance(getattr(dul, name), queue.Queue), changed(f"dul.DULServiceProvider.{name}", "not a Queue")
    assert dul.state_machine.current_state == "Sta1", changed("fsm.StateMachine.current_state", "not a state name")
    dul.__class__ = PDataViewDUL  # the class swap of _BulkReadRequestHandler


def test_none_to_the_user_ends_the_wait_for_an_association_request():
    """What the Sta2 shortcut relies on: ``None`` reads as "nothing came" to the acceptor."""
    dul = acceptor().dul
    dul.to_user_queue.put(None)
    assert dul.receive_pdu(wait=True, timeout=1) is None, changed("dul.DULServiceProvider.receive_pdu", "None")
    source = inspect.getsource(Association.run_reactor)
    assert "receive_pdu(wait=True, timeout=self.acse_timeout)" in source and "if primitive is None" in source, \
        changed("association.Association.run_reactor", "the acceptor no longer treats no primitive as a timeout")


@pytest.mark.parametrize(("name", "meaning"), [("Sta2", "awaiting a-associate-rq"), ("Sta6", "established")])
def test_state_names(name, meaning):
    assert meaning in fsm.STATES.get(name, "").lower(), changed(f"fsm.STATES[{name!r}]", fsm.STATES.get(name))


@pytest.mark.parametrize(("name", "meaning"), [("Evt10", "p-data-tf"), ("Evt17", "closed"), ("Evt19", "invalid")])
def test_event_names(name, meaning):
    assert meaning in fsm.EVENTS.get(name, "").lower(), changed(f"fsm.EVENTS[{name!r}]", fsm.EVENTS.get(name))


def test_p_data_tf_decoded_as_views_matches_pynetdicom():
    value = b"\x03" + b"command"
    pdu = b"\x04\x00" + (4 + len(value) + 1).to_bytes(4, "big") + (len(value) + 1).to_bytes(4, "big") + b"\x01" + value
    stock_pdu, stock_event = DULServiceProvider._decode_pdu(acceptor().dul, bytearray(pdu))
    fast = acceptor().dul
    fast.__class__ = PDataViewDUL
    ours, event = fast._decode_pdu(bytearray(pdu))
    assert stock_event == event == _P_DATA_TF_RECEIVED, changed("dul.DULServiceProvider._decode_pdu", stock_event)
    assert isinstance(stock_pdu, P_DATA_TF) and type(ours) is P_DATA_TF, changed("pdu.P_DATA_TF", "another class")
    stock_items = [(i.presentation_context_id, bytes(i.presentation_data_value))
                   for i in stock_pdu.presentation_data_value_items]
    assert stock_items == [(i.presentation_context_id, bytes(i.presentation_data_value))
                           for i in ours.presentation_data_value_items] == [(1, value)], \
        changed("pdu.P_DATA_TF.presentation_data_value_items", "items differ from pynetdicom's own decoding")
    item = PresentationDataValueItem()
    item.presentation_context_id, item.presentation_data_value = 1, memoryview(value)
    assert item.presentation_data_value == value, changed("pdu_items.PresentationDataValueItem", "value not kept")


def test_events_and_handlers():
    assert params(evt.trigger) == ["assoc", "event", "attrs"], changed("events.trigger", f"{params(evt.trigger)}")
    for name in ("EVT_PDU_RECV", "EVT_DATA_RECV", "EVT_CONN_CLOSE", "EVT_REQUESTED", "EVT_ACCEPTED",
                 "EVT_REJECTED", "EVT_ABORTED", "EVT_C_STORE"):
        assert hasattr(evt, name), changed(f"events.{name}", "missing")
    assert params(Association.get_handlers) == ["event"], changed("association.Association.get_handlers", "parameters")


def test_public_api_the_listener_and_scu_use():
    assoc = acceptor()
    assert params(assoc.acse.send_reject) == ["result", "source", "diagnostic"], \
        changed("acse.ACSE.send_reject", f"{params(assoc.acse.send_reject)}")
    assert callable(getattr(assoc, "kill", None)), changed("association.Association.kill", "missing")
    assert hasattr(assoc.requestor, "primitive"), changed("association.ServiceUser.primitive", "missing")
    assert isinstance(getattr(_config, "STORE_SEND_CHUNKED_DATASET", None), bool), \
        changed("_config.STORE_SEND_CHUNKED_DATASET", "missing")


def test_only_the_seam_reaches_into_pynetdicom():
    """The seam stays one: no other module imports pynetdicom's internal modules or touches ``_servers``."""
    internal = re.compile(r"from pynetdicom\.(dul|transport|fsm|pdu|pdu_items|pdu_primitives)\b|\._servers\b"
                          r"|\"Sta\d+\"|\"Evt\d+\"|__class__ = ")
    seam = REPO / "dicom" / "netseam"
    outside = [p for folder in ("dicom", "radtriage", "worker", "db", "scoring", "common")
               for p in (REPO / folder).rglob("*.py") if seam not in p.parents]
    offenders = [str(p.relative_to(REPO)) for p in outside if internal.search(p.read_text())]
    assert offenders == [], f"pynetdicom internals used outside dicom/netseam: {offenders}"

"""The DICOM listener (C-ECHO, C-STORE): admit the caller, store durably, record, answer.

The C-STORE handler is thin: check the few tags it needs, write the received bytes
(fsync), commit the row, answer. It never calls a model or the queue; completed studies
reach the workers through the database outbox. Who may associate is decided by
``dicom.access`` before any presentation context is negotiated. pynetdicom's internals
are reached only through ``dicom.netseam``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.sop_class import Verification
from sqlalchemy.orm import Session, sessionmaker

from common import ACCEPTED_SOP_CLASSES
from db.ingest import InstanceHeader
from dicom import status
from dicom.acceptance import check_encoding, identify
from dicom.access import AccessPolicy, AllowedPeer, check_exposure
from dicom.errors import InvalidDataset
from dicom.intake import take_in
from dicom.netseam import HandedOverServer, serve_handed_over, serve_in_background
from dicom.peer_log import limit_per_peer, quiet_pynetdicom

log = limit_per_peer(logging.getLogger(__name__))  # lines about a peer name it: extra={"peer": address}

# A-ASSOCIATE-RJ (result, source, diagnostic) for each refusal: permanent, by the service
# user, "calling AE title not recognised" / "called AE title not recognised" (PS3.8 9.3.4).
_REJECT = {"called_ae": (0x01, 0x01, 0x07), "calling_ae": (0x01, 0x01, 0x03), "host": (0x01, 0x01, 0x03)}
# As pynetdicom's own limit: transient, by the service provider (presentation), local limit exceeded.
_LIMIT_REJECT = (0x02, 0x03, 0x02)
# Presentation context results (PS3.8 9.3.3.2) as refusal reasons.
_CONTEXT_RESULT = {0x01: "context_rejected", 0x02: "context_rejected", 0x03: "sop_class_not_supported",
                   0x04: "transfer_syntax_not_supported"}


def _preferred_syntaxes() -> list[str]:
    """Every transfer syntax, in the order we pick from what a sender proposes.

    The acceptor's order decides (pynetdicom), so compressed syntaxes come first: a sender
    offering its file's own compression then sends it as is, never transcoded. Uncompressed
    ones follow, explicit before implicit VR.
    """
    uncompressed = [DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian,
                    ImplicitVRLittleEndian]
    compressed = [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in uncompressed]
    return compressed + uncompressed


# The largest P-DATA-TF we accept (announced at association): a 10 MB radiograph fits in one.
MAX_PDU_BYTES = 64 * 1024 * 1024

# Called with (result, status): result is "stored", "duplicate", "reopened" or "refused".
StoreObserver = Callable[[str, int], None]


def _ignore(*_args) -> None:
    pass


@dataclasses.dataclass
class StoreHandler:
    """Handles EVT_C_STORE: durable file, committed row, then the status (``dicom.status``)."""

    data_dir: Path
    sessions: sessionmaker[Session]
    observe: StoreObserver = _ignore
    # The dataset's own SOP class must be one of these (``Listener`` sets the list it negotiates).
    accepted_sop_classes: tuple[str, ...] = ACCEPTED_SOP_CLASSES

    def __call__(self, event: evt.Event) -> int:
        try:
            code, result = self._store(event)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a dropped association
            code, result = status.status_for(exc), "refused"
            log.warning("C-STORE refused with 0x%04X (%s): %s", code, status.REASONS.get(code, "?"),
                        status.describe(exc))
        self.observe(result, code)
        return code

    def _store(self, event: evt.Event) -> tuple[int, str]:
        syntax, accepted = str(event.context.transfer_syntax), self.accepted_sop_classes
        with event.request.DataSet.getbuffer() as received:
            check_encoding(received[:6], syntax)  # the accept rule's, as backfill and send apply it to files
        try:
            new = identify(_header(event), syntax, accepted_sop_classes=accepted)
        except Exception:  # noqa: BLE001 - a deferred value, or a broken dataset: parsed whole below
            # A large value identify needed was deferred (it cannot be read back from the
            # buffer), or the dataset is really broken: a whole parse tells which.
            new = identify(_parsed(event), syntax, accepted_sop_classes=accepted)
        received = event.request.DataSet
        with received.getbuffer() as dataset_bytes:
            recorded = take_in((_file_head(event, new), dataset_bytes), new, data_dir=self.data_dir,
                               sessions=self.sessions)
        return status.SUCCESS, recorded.outcome.value


# Values longer than this are not read while checking a dataset: Pixel Data stays in the
# receive buffer, and only its length is looked at (``dicom.intake``).
_DEFER_BYTES = 64 * 1024


def _header(event: evt.Event) -> Dataset:
    """The received dataset, parsed without copying its large values (a deflated one whole).

    A deferred value is only skipped over, so one that the received bytes end inside of is
    given the length that really arrived: a truncated Pixel Data stays detectable.
    """
    syntax = event.context.transfer_syntax
    if syntax.is_deflated:
        return event.dataset
    received = event.request.DataSet
    received.seek(0)
    ds = read_dataset(received, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=_DEFER_BYTES)
    size = received.seek(0, 2)  # the end: how many bytes arrived
    for tag in list(ds.keys()):
        element = ds.get_item(tag, keep_deferred=True)
        if getattr(element, "value", True) is None and element.value_tell + element.length > size:
            ds[tag] = element._replace(length=max(0, size - element.value_tell))
    return ds


def _parsed(event: evt.Event) -> Dataset:
    try:
        return event.dataset
    except Exception as exc:
        raise InvalidDataset.unparsable(exc) from exc


def _file_head(event: evt.Event, new: InstanceHeader) -> bytes:
    """Preamble and file meta for the received dataset bytes, naming the dataset's own UIDs."""
    meta = event.file_meta
    # Some senders' requests carry a stale Affected SOP Class or Instance UID (from an old
    # file meta): the stored file names the dataset's own.
    meta.MediaStorageSOPClassUID = new.sop_class_uid
    meta.MediaStorageSOPInstanceUID = new.sop_instance_uid
    return b"".join((b"\x00" * 128, b"DICM", encode_file_meta(meta)))


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerConfig:
    """Where and how the listener serves; built from the settings by ``radtriage.serve``.

    Attributes
    ----------
    ae_title : str
        The called AE title we answer to; any other is rejected.
    host, port : str, int
        The address to bind.
    accepted_sop_classes : tuple of str
        Storage SOP class UIDs; any other is refused at negotiation.
    allowed : tuple of AllowedPeer
        Calling AE titles (optionally with a host) allowed to associate; empty: any.
    allow_any : bool
        Start on a non-loopback address without an allow-list.
    ssl_context : ssl.SSLContext or None
        TLS only, when set (``dicom.access.server_tls_context``).
    max_associations : int
        More concurrent associations are rejected (transient, local limit exceeded).
    max_associations_per_host : int
        Connections one host may hold open at once; more are closed as they arrive, so one
        host (a hung modality, a port scanner) cannot take every slot. 0: half of
        ``max_associations``. Not below it, or only ``max_associations`` applies.
    acse_timeout, dimse_timeout, network_timeout : float
        Seconds, as pynetdicom's AE options of the same names.
    plain_pynetdicom : bool
        Serve with pynetdicom's own server and sockets, none of ``dicom.netseam``: slower,
        and for one process only; the way back if a pynetdicom upgrade breaks the seam.
    """

    ae_title: str
    host: str
    port: int
    accepted_sop_classes: tuple[str, ...] = ACCEPTED_SOP_CLASSES
    allowed: tuple[AllowedPeer, ...] = ()
    allow_any: bool = False
    ssl_context: ssl.SSLContext | None = None
    max_associations: int = 16
    max_associations_per_host: int = 0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    plain_pynetdicom: bool = False

    @property
    def per_host_limit(self) -> int:
        """Connections one host may hold; 0 when only ``max_associations`` applies."""
        limit = self.max_associations_per_host or self.max_associations // 2
        return limit if 0 < limit < self.max_associations else 0

    def check_exposure(self) -> None:
        """Raise ``AccessConfigError`` for a non-loopback address without an allow-list (unless allowed)."""
        check_exposure(self.host, AccessPolicy(self.ae_title, self.allowed), allow_any=self.allow_any)


class Listener:
    """A pynetdicom AE serving Verification and the configured storage classes.

    Parameters
    ----------
    config : ListenerConfig
    handler : StoreHandler
    on_association : callable, optional
        Called with "accepted", "rejected" or "aborted" for every association (metrics).
    on_refusal : callable, optional
        Called with a fixed reason for every refused association: "called_ae", "calling_ae",
        "host", "association_limit" (metrics). Refused presentation contexts are not
        refusals: senders propose many classes they never send.
    """

    def __init__(self, config: ListenerConfig, *, handler: StoreHandler,
                 on_association: Callable[[str], None] | None = None,
                 on_refusal: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.address = (config.host, config.port)
        self.policy = AccessPolicy(config.ae_title, config.allowed)
        self._handler = handler
        # One list for negotiation and for the dataset's own SOP class (``dicom.acceptance``).
        handler.accepted_sop_classes = tuple(config.accepted_sop_classes)
        self._on_association = on_association or _ignore
        self._on_refusal = on_refusal or _ignore
        quiet_pynetdicom()  # a peer's garbage: one line each from pynetdicom too, never a traceback
        self._ae = AE(ae_title=config.ae_title)
        # Large PDUs: with pynetdicom's default of 16 KiB, receiving took about 3x as long. Not
        # unlimited: a PDU past what we announce is a protocol error, and the association is
        # aborted before a buffer of that size is taken (``dicom.netseam.transport``).
        self._ae.maximum_pdu_size = MAX_PDU_BYTES
        # The called and calling AE titles are checked by ``self.policy`` (with hosts).
        self._ae.require_called_aet = False
        self._ae.maximum_associations = config.max_associations
        self._ae.acse_timeout = config.acse_timeout
        self._ae.dimse_timeout = config.dimse_timeout
        self._ae.network_timeout = config.network_timeout
        self._ae.add_supported_context(Verification)
        for sop_class in config.accepted_sop_classes:
            self._ae.add_supported_context(sop_class, _preferred_syntaxes())
        self._server = None
        self._over_limit: set[tuple[str, int]] = set()
        self._over_limit_lock = threading.Lock()

    def start(self) -> None:
        """Bind and serve in background threads.

        Raises
        ------
        AccessConfigError
            A non-loopback address without an allow-list and without ``allow_any``.
        OSError
            The address cannot be bound.
        """
        self.config.check_exposure()
        if self.config.plain_pynetdicom:
            self._server = self._ae.start_server(self.address, block=False, evt_handlers=self._event_handlers(),
                                                 ssl_context=self.config.ssl_context)
        else:
            self._server = serve_in_background(self._ae, self.address, evt_handlers=self._event_handlers(),
                                               ssl_context=self.config.ssl_context,
                                               per_host_limit=self.config.per_host_limit)
        # Port 0 binds an ephemeral port: report the real one.
        self.address = self._server.server_address[:2]
        log.info("DICOM listener on %s:%d%s%s", *self.address, " (TLS)" if self.config.ssl_context else "",
                 ", plain pynetdicom" if self.config.plain_pynetdicom else "")

    def handed_over_server(self, on_closed: Callable[[str], None]) -> HandedOverServer:
        """A server for connections another process accepted (``dicom.netseam.pool``); it binds nothing.

        ``on_closed(host)`` is called exactly once when each connection is done, however it ended.
        """
        def closed(address: tuple[str, int]) -> None:
            try:
                # A connection flagged over the limit that closed before asking for an association.
                self._take_over_limit((str(address[0]), int(address[1])))
            finally:
                on_closed(str(address[0]))

        # The pool keeps the association limit for all members (``refuse_next_from``).
        self._server = serve_handed_over(self._ae, self.address, evt_handlers=self._event_handlers(),
                                         ssl_context=self.config.ssl_context, on_closed=closed)
        return self._server

    def refuse_next_from(self, address: tuple[str, int]) -> None:
        """Reject the association that the connection from ``address`` requests: over the limit."""
        with self._over_limit_lock:
            self._over_limit.add(address)

    def _event_handlers(self) -> list:
        return [
            (evt.EVT_C_STORE, self._handler),
            (evt.EVT_REQUESTED, self._admit),
            (evt.EVT_ACCEPTED, self._accepted),
            (evt.EVT_REJECTED, self._rejected),
            (evt.EVT_ABORTED, lambda _e: self._on_association("aborted")),
        ]

    def _admit(self, event: evt.Event) -> None:
        """EVT_REQUESTED: reject callers the policy refuses, before any negotiation."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        address = str(assoc.requestor.address)
        if self._over_limit and self._take_over_limit((address, assoc.requestor.port)):
            self._rejected(event)
            assoc.acse.send_reject(*_LIMIT_REJECT)
            assoc.kill()
            return
        reason = self.policy.refusal(called_ae=str(request.called_ae_title), calling_ae=str(request.calling_ae_title),
                                     address=address)
        if reason is None:
            return
        log.warning("association from %s (calling AE %r, called AE %r) rejected: %s", address,
                    str(request.calling_ae_title), str(request.called_ae_title), reason, extra={"peer": address})
        self._on_refusal(reason)
        self._on_association("rejected")
        assoc.acse.send_reject(*_REJECT[reason])
        # As pynetdicom's own rejection does: let the DUL send the A-ASSOCIATE-RJ, then stop.
        assoc.kill()

    def _take_over_limit(self, address: tuple[str, int]) -> bool:
        with self._over_limit_lock:
            if address in self._over_limit:
                self._over_limit.discard(address)
                return True
            return False

    def _accepted(self, event: evt.Event) -> None:
        self._on_association("accepted")
        # Senders propose every class they might send (storescu: ~120): refusing the others
        # is routine, so one DEBUG line per association and no refusal count.
        refused = event.assoc.rejected_contexts
        if refused and log.isEnabledFor(logging.DEBUG):
            reasons = collections.Counter(_CONTEXT_RESULT.get(c.result, "context_rejected") for c in refused)
            log.debug("association accepted with %d presentation context(s) refused: %s", len(refused),
                      ", ".join(f"{count} {reason}" for reason, count in reasons.most_common()))

    def _rejected(self, _event: evt.Event) -> None:
        # pynetdicom rejects on its own only when the association limit is reached. A crowd of
        # callers must not write a line each: rate-limited as one peer.
        log.warning("association rejected: more than %d at once", self.config.max_associations,
                    extra={"peer": "the association limit"})
        self._on_refusal("association_limit")
        self._on_association("rejected")

    def active_associations(self) -> int:
        return len(self._ae.active_associations)

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

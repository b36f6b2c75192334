"""The DICOM listener (C-ECHO, C-STORE): store durably, record, answer.

The C-STORE handler is thin: read the few identifying tags, write the received bytes
(fsync), commit the row, answer. It never calls a model or the queue; completed studies
reach the workers through the database outbox.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    Verification,
)
from sqlalchemy.orm import Session, sessionmaker

from dicom import status
from dicom.errors import InvalidDataset
from dicom.intake import identify, take_in

log = logging.getLogger(__name__)

STORAGE_SOP_CLASSES = (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
)

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


# Called with (result, status): result is "stored", "duplicate", "reopened" or "refused".
StoreObserver = Callable[[str, int], None]


def _ignore(result: str, code: int) -> None:
    pass


@dataclasses.dataclass
class StoreHandler:
    """Handles EVT_C_STORE: durable file, committed row, then the status."""

    data_dir: Path
    sessions: sessionmaker[Session]
    observe: StoreObserver = _ignore

    def __call__(self, event: evt.Event) -> int:
        try:
            code, result = self._store(event)
        except Exception as exc:  # every failure becomes a status, never a dropped association
            code, result = status.status_for(exc), "refused"
            log.warning("C-STORE refused with 0x%04X: %s", code, status.describe(exc))
        self.observe(result, code)
        return code

    def _store(self, event: evt.Event) -> tuple[int, str]:
        try:
            ds = event.dataset
        except Exception as exc:
            raise InvalidDataset(f"dataset could not be parsed ({type(exc).__name__})") from exc
        new = identify(ds, str(event.context.transfer_syntax))
        recorded = take_in(event.encoded_dataset(include_meta=True), new, data_dir=self.data_dir, sessions=self.sessions)
        return status.SUCCESS, recorded.outcome.value


class Listener:
    """A pynetdicom AE serving Verification and the radiograph storage classes."""

    def __init__(self, *, ae_title: str, host: str, port: int, handler: StoreHandler,
                 on_association: Callable[[str], None] | None = None) -> None:
        self.address = (host, port)
        self._handler = handler
        self._on_association = on_association
        self._ae = AE(ae_title=ae_title)
        # Unlimited PDUs: the default 16 KiB costs about 3x in throughput (STACK.md).
        self._ae.maximum_pdu_size = 0
        self._ae.require_called_aet = True
        self._ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            self._ae.add_supported_context(sop_class, _preferred_syntaxes())
        self._server = None

    def start(self) -> None:
        handlers = [(evt.EVT_C_STORE, self._handler)]
        if self._on_association:
            handlers += [
                (evt.EVT_ACCEPTED, lambda _e: self._on_association("accepted")),
                (evt.EVT_REJECTED, lambda _e: self._on_association("rejected")),
                (evt.EVT_ABORTED, lambda _e: self._on_association("aborted")),
            ]
        self._server = self._ae.start_server(self.address, block=False, evt_handlers=handlers)
        log.info("DICOM listener on %s:%d", *self.address)

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

"""The one SCU: C-ECHO, C-STORE of files or datasets (``radtriage echo``/``send``), and SR export.

Files with a file meta header are sent byte for byte in their own transfer syntax (never
decoded); files without one, and datasets, are encoded by pynetdicom. Each call opens
its own association(s), over TLS when given a client context, and bounds every network
wait by ``timeout``.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification

from dicom.errors import AssociationFailed, DestinationUnavailable, InvalidDataset, SendRefused

__all__ = ["NO_CONTEXT", "echo", "send_datasets", "send_sr"]

DEFAULT_TIMEOUT = 30.0
# Returned, not received, for an instance that was never sent because the peer accepted no
# presentation context for its SOP class and transfer syntax: the DIMSE code for "Refused:
# SOP Class not supported", which is what the peer said at negotiation.
NO_CONTEXT = 0x0122
_MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# C-STORE warning statuses (PS3.4 B.2.3, and pynetdicom's 0x0001/0x0107/0x0116): stored.
_WARNING_STATUSES = {0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}
# A-ASSOCIATE-RJ diagnostics a user can act on (PS3.8 9.3.4).
_REJECTIONS = {(0x01, 0x03): "calling AE title not recognised", (0x01, 0x07): "called AE title not recognised",
               (0x03, 0x02): "the peer's association limit is reached", (0x03, 0x01): "the peer is busy"}


@dataclasses.dataclass(frozen=True, slots=True)
class _Item:
    """One instance to send: a file sent raw (``path``) or a dataset pynetdicom encodes."""

    sop_class: str
    transfer_syntax: UID
    path: Path | None = None
    dataset: Dataset | None = None

    def contexts(self) -> list[tuple[str, tuple[str, ...]]]:
        """Its own syntax alone (so the peer cannot pick another); uncompressed ones may convert."""
        own = [(self.sop_class, (str(self.transfer_syntax),))]
        if not self.transfer_syntax.is_compressed:
            own.append((self.sop_class, tuple(str(t) for t in _UNCOMPRESSED)))
        return own


def echo(host: str, port: int, *, called_ae: str = "ANY-SCP", calling_ae: str = "RADTRIAGE",
         tls: ssl.SSLContext | None = None, timeout: float = DEFAULT_TIMEOUT) -> int:
    """C-ECHO over a new association.

    Returns
    -------
    int
        The C-ECHO status (0x0000 is success).

    Raises
    ------
    AssociationFailed
        No connection, association rejected or aborted, or no answer within ``timeout``.
    """
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(Verification)
    try:
        assoc = _associate(ae, host, port, called_ae, tls)
        try:
            response = assoc.send_c_echo()
        finally:
            _release(assoc)
    finally:
        ae.shutdown()
    if "Status" not in response:
        raise AssociationFailed(f"no C-ECHO response from {called_ae}@{host}:{port} within {timeout:g} s")
    return int(response.Status)


def send_datasets(host: str, port: int, called_ae: str, calling_ae: str,
                  datasets_or_paths: Iterable[Dataset | str | Path], tls: ssl.SSLContext | None = None, *,
                  timeout: float = DEFAULT_TIMEOUT) -> list[int]:
    """C-STORE each dataset or file, in order, over as few associations as contexts allow.

    Parameters
    ----------
    host, port : str, int
        The peer.
    called_ae, calling_ae : str
        The peer's AE title and ours.
    datasets_or_paths : iterable of pydicom.Dataset, str or Path
        Datasets need ``SOPClassUID``, ``SOPInstanceUID`` and, when their pixel data is
        compressed, ``file_meta.TransferSyntaxUID``. Files are sent as stored.
    tls : ssl.SSLContext, optional
        TLS client context (``dicom.access.client_tls_context``); None: plain TCP.
    timeout : float
        Seconds allowed for the connection and for each association/DIMSE exchange.

    Returns
    -------
    list of int
        One status per input, in order: the peer's C-STORE status, or :data:`NO_CONTEXT`
        when the peer accepted no presentation context for that instance.

    Raises
    ------
    InvalidDataset
        An input is not readable DICOM or lacks its SOP Class/Instance UID (nothing sent).
    AssociationFailed
        No connection, association rejected or aborted, or no answer within ``timeout``;
        ``.statuses`` holds the statuses of the instances sent before.
    """
    items = [_prepare(x) for x in datasets_or_paths]
    statuses: list[int] = []
    for batch in _batches(items):
        try:
            statuses += _send_batch(host, port, called_ae, calling_ae, batch, tls, timeout)
        except AssociationFailed as exc:
            raise AssociationFailed(exc.reason, statuses + exc.statuses) from exc
    return statuses


def send_sr(dataset: Dataset, *, host: str, port: int, called_ae: str, calling_ae: str = "RADTRIAGE",
            timeout: float = DEFAULT_TIMEOUT, tls: ssl.SSLContext | None = None) -> int:
    """C-STORE one dataset (an SR) over a new association, and say whether a failure is worth retrying.

    One association per SR, every network wait bounded by ``timeout``, so a destination
    that is down or hangs costs the caller at most a few timeouts. Retrying is the caller's
    job (with ``common.retry.Backoff``).

    Parameters
    ----------
    dataset : pydicom.Dataset
        With ``SOPClassUID`` and file meta (``dicom.sr.build_draft_sr`` output).
    host, port : str, int
        The destination.
    called_ae, calling_ae : str
        AE titles of the destination and of radtriage.
    timeout : float
        Seconds allowed for the TCP connect and for each association/DIMSE exchange.
    tls : ssl.SSLContext, optional
        TLS client context (``dicom.access.client_tls_context``); None: plain TCP.

    Returns
    -------
    int
        The C-STORE status: 0x0000 success, or a warning status (0x0001, 0xB000, 0xB006,
        0xB007, 0x0107, 0x0116); the SR is stored in both cases.

    Raises
    ------
    DestinationUnavailable
        No connection (or TLS refused), association rejected or aborted, no answer within
        ``timeout``, or a 0xA7xx "out of resources" status.
    SendRefused
        Any other failure status (e.g. 0x0122 SOP class not supported, 0xA9xx, 0xCxxx).
    """
    where = f"{called_ae}@{host}:{port}"
    ae = _ae(calling_ae, timeout)
    ae.add_requested_context(dataset.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        try:
            assoc = _associate(ae, host, port, called_ae, tls)
        except AssociationFailed as exc:
            # pynetdicom reports a refused TCP connection as an abort; all mean "try later".
            raise DestinationUnavailable(f"SR destination: {exc.reason}") from exc
        try:
            response = assoc.send_c_store(dataset)
        finally:
            _release(assoc)
    finally:
        ae.shutdown()
    if "Status" not in response:  # an empty Dataset: no answer, or the association broke
        raise DestinationUnavailable(f"SR destination {where}: no C-STORE response within {timeout:g} s")
    status = int(response.Status)
    if status == 0x0000 or status in _WARNING_STATUSES:
        return status
    if status & 0xFF00 == 0xA700:
        raise DestinationUnavailable(f"SR destination {where}: out of resources (status 0x{status:04X})")
    raise SendRefused(f"SR destination {where}: refused with status 0x{status:04X}", status)


def _send_batch(host: str, port: int, called_ae: str, calling_ae: str, batch: Sequence[_Item],
                tls: ssl.SSLContext | None, timeout: float) -> list[int]:
    ae = _ae(calling_ae, timeout)
    for sop_class, syntaxes in dict.fromkeys(c for item in batch for c in item.contexts()):
        ae.add_requested_context(sop_class, list(syntaxes))
    # Files go out as stored: pynetdicom streams everything after the file meta.
    _config.STORE_SEND_CHUNKED_DATASET = True
    statuses: list[int] = []
    try:
        assoc = _associate(ae, host, port, called_ae, tls, all_refused_ok=True)
        if assoc is None:  # the peer accepted the association but none of its contexts
            return [NO_CONTEXT] * len(batch)
        try:
            for item in batch:
                response = _store(assoc, item)
                if response is None:
                    statuses.append(NO_CONTEXT)
                    continue
                if "Status" not in response:
                    raise AssociationFailed(f"no C-STORE response from {called_ae}@{host}:{port} "
                                            f"(aborted or no answer within {timeout:g} s)", statuses)
                statuses.append(int(response.Status))
        finally:
            _release(assoc)
    finally:
        ae.shutdown()
    return statuses


def _store(assoc, item: _Item) -> Dataset | None:
    """The peer's response, or None when no accepted context fits the instance."""
    accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
    if (item.sop_class, str(item.transfer_syntax)) in accepted:
        return assoc.send_c_store(item.path if item.path is not None else item.dataset)
    if item.transfer_syntax.is_compressed or not any(sop == item.sop_class for sop, _ in accepted):
        return None
    # Uncompressed, but not in its own syntax: decode and let pynetdicom convert.
    dataset = item.dataset if item.dataset is not None else pydicom.dcmread(item.path, force=True)
    return assoc.send_c_store(dataset)


def _prepare(source: Dataset | str | Path) -> _Item:
    if isinstance(source, Dataset):
        return _dataset_item(source)
    path = Path(source)
    try:
        meta, _offset = split_dataset(path)
    except (InvalidDicomError, OSError, EOFError, ValueError):
        meta = Dataset()
    if all(meta.get(k) for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")):
        return _Item(str(meta.MediaStorageSOPClassUID), UID(meta.TransferSyntaxUID), path=path)
    # No usable file meta (e.g. a bare dataset): read it, and say what it is encoded in.
    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise InvalidDataset(f"{path.name}: not readable DICOM ({type(exc).__name__})") from exc
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return _dataset_item(ds, name=path.name)


def _dataset_item(ds: Dataset, name: str = "dataset") -> _Item:
    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        raise InvalidDataset(f"{name}: no SOP Class or SOP Instance UID")
    meta = getattr(ds, "file_meta", None)
    syntax = UID(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ExplicitVRLittleEndian
    if meta is None or "TransferSyntaxUID" not in meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    return _Item(str(ds.SOPClassUID), syntax, dataset=ds)


def _batches(items: list[_Item]) -> list[list[_Item]]:
    """Split so that no association needs more than 128 presentation contexts."""
    batches: list[list[_Item]] = []
    contexts: set = set()
    for item in items:
        needed = set(item.contexts())
        if not batches or len(contexts | needed) > _MAX_CONTEXTS:
            batches.append([])
            contexts = set()
        batches[-1].append(item)
        contexts |= needed
    return batches


def _ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.maximum_pdu_size = 0
    return ae


def _associate(ae: AE, host: str, port: int, called_ae: str, tls: ssl.SSLContext | None, *,
               all_refused_ok: bool = False):
    """An established association; None (when ``all_refused_ok``) if every context was refused."""
    assoc = ae.associate(host, int(port), ae_title=called_ae, tls_args=(tls, host) if tls else None)
    if assoc.is_established:
        return assoc
    accepted_rq = assoc.acceptor.primitive is not None and getattr(assoc.acceptor.primitive, "result", None) == 0x00
    if accepted_rq and all_refused_ok:
        return None
    where = f"{called_ae}@{host}:{port}"
    if accepted_rq:
        raise AssociationFailed(f"{where} accepted no presentation context")
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        why = _REJECTIONS.get((rj.result_source, rj.diagnostic), "rejected") if rj is not None else "rejected"
        raise AssociationFailed(f"association with {where} rejected ({why})")
    raise AssociationFailed(f"association with {where} failed (not reachable, TLS refused or aborted)")


def _release(assoc) -> None:
    if assoc.is_established:
        assoc.release()

"""Send a draft SR to the PACS by C-STORE; say whether a failure is worth retrying.

One association per SR, every network wait bounded by ``timeout``, so a PACS that is down
or hangs costs the caller at most a few timeouts and never blocks other work. Retrying is
the caller's job (the worker's task retries with :func:`backoff_seconds`).

Exception tree::

    DicomError
     └── SendError              the SR was not stored; ``retryable`` says whether to try again
          ├── DestinationUnavailable   unreachable, rejected, aborted, timed out, or
          │                            0xA7xx "out of resources": retry later
          └── SendRefused              any other failure status: a retry gets the same answer
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from dicom.errors import DicomError

__all__ = ["DestinationUnavailable", "SendError", "SendRefused", "backoff_seconds", "send_sr"]

DEFAULT_TIMEOUT = 30.0
_WARNING_STATUSES = {0x0001, 0x0107, 0x0116, 0xB000, 0xB006, 0xB007}


class SendError(DicomError):
    """The SR was not stored. Messages name the destination and status, never PHI."""

    retryable = False


class DestinationUnavailable(SendError):
    """The destination could not take the SR now (down, busy, full, slow): retry later."""

    retryable = True


class SendRefused(SendError):
    """The destination refused the SR with a failure status: retrying will not help.

    Parameters
    ----------
    message : str
    status : int
        The C-STORE status the destination returned.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def send_sr(
    dataset: Dataset,
    *,
    host: str,
    port: int,
    called_ae: str,
    calling_ae: str = "RADTRIAGE",
    timeout: float = DEFAULT_TIMEOUT,
) -> int:
    """C-STORE one dataset (an SR) over a new association.

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

    Returns
    -------
    int
        The C-STORE status: 0x0000 success, or a warning status (0x0001, 0xB000, 0xB006,
        0xB007, 0x0107, 0x0116); the SR is stored in both cases.

    Raises
    ------
    DestinationUnavailable
        No connection, association rejected or aborted, no answer within ``timeout``, or a
        0xA7xx "out of resources" status.
    SendRefused
        Any other failure status (e.g. 0x0122 SOP class not supported, 0xA9xx, 0xCxxx).
    """
    where = f"{called_ae}@{host}:{port}"
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(dataset.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    try:
        assoc = ae.associate(host, int(port), ae_title=called_ae)
        if not assoc.is_established:
            # pynetdicom reports a refused TCP connection as an abort; both mean "try later".
            state = "rejected (check the AE titles)" if assoc.is_rejected else "not reachable or aborted"
            raise DestinationUnavailable(f"SR destination {where}: association {state}")
        try:
            response = assoc.send_c_store(dataset)
        finally:
            if assoc.is_established:
                assoc.release()
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


def backoff_seconds(attempt: int, *, base: float = 5.0, cap: float = 600.0) -> float:
    """Wait before retry ``attempt`` (0 = the first retry): ``base * 2**attempt``, at most ``cap``.

    Raises
    ------
    ValueError
        If ``attempt`` is negative or ``base``/``cap`` are not positive.
    """
    if attempt < 0 or base <= 0 or cap <= 0:
        raise ValueError("attempt must be >= 0, base and cap > 0")
    return min(cap, base * 2.0 ** min(attempt, 62))

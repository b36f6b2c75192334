"""Errors raised by the DICOM side of radtriage (listener, storage, pixels, the SCU).

Exception tree::

    Exception
     └── DicomError                 anything DICOM-related went wrong
          ├── UnscorableImage       the instance is stored, but its pixels cannot be
          │                         turned into model input (``.reason`` says why)
          ├── OutOfResources        disk or database unavailable: the sender retries
          │                         later (C-STORE status 0xA700)
          ├── InvalidDataset        the dataset cannot be parsed (0xC210); a retry
          │    │                    will not help
          │    ├── MissingAttribute a required identifying attribute is absent or
          │    │                    not a valid UID (0xC220)
          │    ├── DatasetMismatch  the dataset does not match its SOP class (0xA900)
          │    └── SopClassNotAccepted
          │                         its SOP class is not one the site takes in (0x0122)
          ├── AccessConfigError     the listener's exposure or TLS settings are unsafe
          │                         or unusable: it refuses to start (also a ValueError)
          ├── AssociationFailed     an SCU association was rejected, aborted or never
          │                         established (``.statuses`` holds what was answered)
          └── SendError             an SR was not stored; ``retryable`` says whether to
               │                    try again (``dicom.scu.send_sr``)
               ├── DestinationUnavailable
               │                    unreachable, rejected, aborted or timed out (raised
               │                    from its ``AssociationFailed``), or 0xA7xx "out of
               │                    resources": retry later
               └── SendRefused      any other failure status (``.status``): a retry
                                    gets the same answer

Messages and reasons never contain PHI (no names, IDs, dates, UIDs); they name the
tag, the codec error class or the value class that was refused.
"""

from __future__ import annotations


class DicomError(Exception):
    """Base class of every DICOM-side error in radtriage."""


class UnscorableImage(DicomError):
    """The pixels of an instance cannot be scored by the AI.

    The study still goes on the worklist at its ordered priority; ``reason`` is shown
    to the user and stored in the events table, so it must stay PHI-free.

    Parameters
    ----------
    reason : str
        Short, human-readable and PHI-free, e.g.
        ``"multi-frame images are not scored (2 frames)"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutOfResources(DicomError):
    """Storage or the database could not take the instance now; nothing was kept."""


class InvalidDataset(DicomError):
    """The received dataset cannot be parsed or lacks what the listener needs."""

    @classmethod
    def unparsable(cls, exc: BaseException) -> InvalidDataset:
        """For a parser's failure: names its class only, as its message may quote a value."""
        return cls(f"dataset could not be parsed ({type(exc).__name__})")


class MissingAttribute(InvalidDataset):
    """A required attribute (named by keyword, never by value) is missing, empty or invalid."""

    def __init__(self, keyword: str, problem: str = "is missing or empty") -> None:
        super().__init__(f"required attribute {keyword} {problem}")
        self.keyword = keyword


class DatasetMismatch(InvalidDataset):
    """The dataset does not match its SOP class (wrong class, or a required module absent)."""


class SopClassNotAccepted(InvalidDataset):
    """The dataset's own SOP class is not one of the accepted storage classes."""

    def __init__(self, sop_class: str) -> None:
        from pydicom.uid import UID

        name = UID(sop_class).name
        known = name and name != sop_class
        super().__init__(f"SOP class {name if known else 'unknown (private)'} is not accepted")
        self.sop_class = sop_class


class AccessConfigError(DicomError, ValueError):
    """The listener's settings would expose it unsafely or cannot be used (TLS files)."""


class AssociationFailed(DicomError):
    """An SCU association could not be used to the end.

    Parameters
    ----------
    reason : str
        PHI-free, e.g. ``"association rejected (calling AE title not recognised)"``.
    statuses : list of int
        The statuses answered before the association failed, in sending order.
    """

    def __init__(self, reason: str, statuses: list[int] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.statuses = list(statuses or [])


class SendError(DicomError):
    """An SR was not stored. Messages name the destination and status, never PHI."""

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

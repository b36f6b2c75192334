"""C-STORE status codes, and the one place exceptions become them (PS3.4 B.2.3, PS3.7 C).

=========  ===============================  ===========================================
 code       meaning                          returned when
=========  ===============================  ===========================================
 0x0000     Success                          file fsynced and its row committed, or the
                                             the same instance again (same dataset, or
                                             same header and decoded pixels)
 0xA700     Refused: out of resources        disk full/unwritable, database unavailable
                                             or locked; nothing was kept, the sender
                                             should retry later
 0xA900     Error: dataset does not match    SOP Class UID missing; an image class
            SOP class                        without its Image Pixel module (no Pixel Data,
                                             Rows, Columns, ...)
 0x0122     Refused: SOP class not           the dataset's own SOP Class UID is not one
            supported                        the site accepts (dicom.acceptance)
 0xC210     Error: cannot understand         the dataset cannot be parsed
 0xC220     Error: cannot understand         Study, Series or SOP Instance UID missing,
                                             empty or not a valid UID (64 characters of
                                             digits and dots at most)
 0xC211     Error: cannot understand         any other unexpected failure (logged)
=========  ===============================  ===========================================

Association-level refusals (A-ASSOCIATE-RJ, unaccepted presentation contexts) are decided
by ``dicom.access`` and pynetdicom; ``docs/conformance.md`` lists them all.
"""

from __future__ import annotations

import errno
import logging

from sqlalchemy.exc import SQLAlchemyError

from dicom.errors import (
    DatasetMismatch,
    InvalidDataset,
    MissingAttribute,
    OutOfResources,
    SopClassNotAccepted,
)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
SOP_CLASS_NOT_SUPPORTED = 0x0122
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
UNEXPECTED_FAILURE = 0xC211
MISSING_ATTRIBUTE = 0xC220

# Short, fixed reasons for logs and metric labels, by code.
REASONS = {
    SUCCESS: "success",
    OUT_OF_RESOURCES: "out_of_resources",
    SOP_CLASS_NOT_SUPPORTED: "sop_class_not_supported",
    DATASET_MISMATCH: "dataset_mismatch",
    CANNOT_UNDERSTAND: "cannot_parse",
    MISSING_ATTRIBUTE: "missing_attribute",
    UNEXPECTED_FAILURE: "unexpected",
}

log = logging.getLogger(__name__)


def status_for(exc: BaseException) -> int:
    """The status to answer for ``exc``, most specific first.

    Parameters
    ----------
    exc : BaseException
        What the C-STORE handler raised.

    Returns
    -------
    int
        One of the codes in this module's table.
    """
    if isinstance(exc, SopClassNotAccepted):
        return SOP_CLASS_NOT_SUPPORTED
    if isinstance(exc, DatasetMismatch):
        return DATASET_MISMATCH
    if isinstance(exc, MissingAttribute):
        return MISSING_ATTRIBUTE
    if isinstance(exc, InvalidDataset):
        return CANNOT_UNDERSTAND
    if isinstance(exc, (OutOfResources, OSError, SQLAlchemyError, MemoryError)):
        return OUT_OF_RESOURCES
    return UNEXPECTED_FAILURE


def describe(exc: BaseException) -> str:
    """A PHI-free description: our own messages, otherwise only the exception class."""
    if isinstance(exc, (InvalidDataset, OutOfResources)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return type(exc).__name__

"""C-STORE status codes, and the one place exceptions become them (PS3.4 B.2.3).

=========  ===============================  ===========================================
 code       meaning                          returned when
=========  ===============================  ===========================================
 0x0000     Success                          file fsynced and its row committed, or the
                                             same instance with the same bytes again
 0xA700     Refused: out of resources        disk full/unwritable, database unavailable;
                                             the sender should retry later
 0xC210     Error: cannot understand         dataset unparsable, or Study/Series/SOP
                                             Instance UID or SOP Class UID missing
 0xC211     Error: cannot understand         any other unexpected failure (logged)
=========  ===============================  ===========================================
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from dicom.errors import InvalidDataset, OutOfResources

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC210
UNEXPECTED_FAILURE = 0xC211

log = logging.getLogger(__name__)


def status_for(exc: BaseException) -> int:
    """The status to answer for ``exc``, most specific first."""
    if isinstance(exc, InvalidDataset):
        return CANNOT_UNDERSTAND
    if isinstance(exc, (OutOfResources, OSError, SQLAlchemyError)):
        return OUT_OF_RESOURCES
    return UNEXPECTED_FAILURE


def describe(exc: BaseException) -> str:
    """A PHI-free description: our own messages, otherwise only the exception class."""
    if isinstance(exc, (InvalidDataset, OutOfResources)):
        return str(exc)
    return type(exc).__name__

"""Which task failures are worth a retry (waits: ``common.TASK_BACKOFF``), and PHI-free labels for them.

Transient: the database or broker briefly away, a model out of memory, a timeout. Anything
else is permanent: retrying an undecodable image or a bug only delays the other studies.
"""

from __future__ import annotations

import os

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError, OperationalError

_TRANSIENT_TYPES = (OperationalError, TimeoutError, ConnectionError, MemoryError, SoftTimeLimitExceeded)
# Out-of-memory errors of torch and TensorFlow, matched by name so this module imports neither.
_TRANSIENT_NAMES = frozenset({"OutOfMemoryError", "ResourceExhaustedError", "DeadlineExceededError"})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def describe(exc: BaseException) -> str:
    """A PHI-free label for a failure: the exception class, never its message."""
    return type(exc).__name__


def where(exc: BaseException) -> str:
    """For logs: the exception class and the line that raised it, never its message (which
    may quote DICOM values such as names or dates)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return type(exc).__name__
    return f"{type(exc).__name__} at {os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"

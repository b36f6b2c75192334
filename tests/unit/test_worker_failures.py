"""Which task failures are retried (and how long the worker waits) and which fail the study."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from common import TASK_BACKOFF
from dicom.errors import InvalidDataset, UnscorableImage
from worker.tasks.failures import describe, is_transient


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError (matched by name: worker/ imports no torch)."""


class ResourceExhaustedError(Exception):
    """Named like tf.errors.ResourceExhaustedError."""


class CudaOutOfMemory(OutOfMemoryError):
    """A subclass of an out-of-memory error is still out of memory."""


def _db_error(cls, *, invalidated: bool = False):
    return cls("SELECT 1", {}, Exception("server closed the connection"), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        _db_error(OperationalError),
        TimeoutError("read timed out"),
        ConnectionError("broker away"),
        MemoryError(),
        OutOfMemoryError("CUDA out of memory"),
        CudaOutOfMemory("CUDA out of memory"),
        ResourceExhaustedError("OOM when allocating tensor"),
        SoftTimeLimitExceeded(),
        _db_error(DBAPIError, invalidated=True),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_transient_failures_are_retried(exc: BaseException) -> None:
    assert is_transient(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value"),
        UnscorableImage("pixel data could not be decoded"),
        InvalidDataset("not DICOM"),
        KeyError("finding"),
        _db_error(IntegrityError),
        _db_error(DBAPIError, invalidated=False),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_permanent_failures_are_not_retried(exc: BaseException) -> None:
    assert is_transient(exc) is False


def test_task_retries_wait_2_4_8_seconds_up_to_two_minutes() -> None:
    waits = [TASK_BACKOFF.seconds(n) for n in range(12)]
    assert waits[:4] == [2.0, 4.0, 8.0, 16.0]
    assert all(later >= earlier for earlier, later in zip(waits, waits[1:]))  # never shrinks
    assert max(waits) == waits[-1] == 120.0
    assert TASK_BACKOFF.seconds(50) == 120.0  # no overflow or runaway for a large retry count


def test_describe_names_the_class_never_the_message() -> None:
    # Exception messages may carry patient data; the stored reason must not.
    assert describe(ValueError("DOE^JANE 1.2.840.99")) == "ValueError"
    assert describe(_db_error(OperationalError)) == "OperationalError"

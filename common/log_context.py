"""Which study the current code is working on, for log lines (the internal id only, never PHI)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

CURRENT_STUDY: contextvars.ContextVar[int | None] = contextvars.ContextVar("radtriage_study_id", default=None)


@contextlib.contextmanager
def about_study(study_id: int) -> Iterator[None]:
    """Log lines written inside the block carry ``study_id`` (structured logs)."""
    token = CURRENT_STUDY.set(study_id)
    try:
        yield
    finally:
        CURRENT_STUDY.reset(token)

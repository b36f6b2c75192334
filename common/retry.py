"""The one retry policy: exponential backoff, capped, for tasks and deliveries alike."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Waits of ``first``, 2×``first``, 4×``first`` … seconds, never more than ``cap``.

    Raises
    ------
    ValueError
        ``first`` is not positive or ``cap`` is below ``first``.
    """

    first: float = 2.0
    cap: float = 120.0

    def __post_init__(self) -> None:
        if self.first <= 0 or self.cap < self.first:
            raise ValueError("a backoff needs 0 < first <= cap")

    def seconds(self, attempt: int) -> float:
        """The wait before retry number ``attempt + 1`` (``attempt`` failures so far, from 0)."""
        # The exponent is bounded so a long-failing destination cannot overflow a float.
        return min(self.cap, self.first * 2 ** min(max(attempt, 0), 64))


# Celery tasks failing transiently (out of memory, database away): seconds, not minutes.
TASK_BACKOFF = Backoff(first=2.0, cap=120.0)

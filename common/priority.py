"""Worklist priorities and their order: STAT above URGENT above ROUTINE."""

from __future__ import annotations

import enum


class Priority(enum.StrEnum):
    """A worklist priority; ``rank`` grows with urgency so ``max`` picks the more urgent."""

    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    STAT = "STAT"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        """The priority whose ``rank`` this is.

        Raises
        ------
        ValueError
            No priority has that rank.
        """
        for priority, value in _RANKS.items():
            if value == rank:
                return priority
        raise ValueError(f"no priority has rank {rank}")

    @classmethod
    def most_urgent(cls, *priorities: Priority | str) -> Priority:
        """The most urgent of the given priorities (ROUTINE when none are given)."""
        coerced = [cls(p) for p in priorities]
        return max(coerced, key=lambda p: p.rank, default=cls.ROUTINE)


_RANKS = {Priority.ROUTINE: 0, Priority.URGENT: 1, Priority.STAT: 2}

"""When a study is complete: the one place that decides it, pure (values in, decisions out).

A study completes by its views, ``grace_seconds`` after its last instance, when it holds a
frontal view and its expected instance count is met (NumberOfStudyRelatedInstances when a
sender gives it, otherwise a frontal and a lateral view); every study completes on the quiet
timer, ``stable_seconds`` after its last instance. The listener reads the views from each
header, the database keeps ``StudyViews`` per study and selects what ``Cutoffs`` makes due.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

__all__ = ["CompletedBy", "CompletionRule", "Cutoffs", "StudyViews", "View", "views_complete"]


class View(enum.StrEnum):
    """The projection class of a radiograph, as far as its header says."""

    FRONTAL = "frontal"
    LATERAL = "lateral"


class CompletedBy(enum.StrEnum):
    """Which rule completed a study, as its COMPLETE event says."""

    QUIET_TIMER = "quiet timer"
    VIEWS_COMPLETE = "views complete"
    BACKFILL = "backfill"  # a backfill completes the studies it read, without waiting


@dataclasses.dataclass(frozen=True, slots=True)
class StudyViews:
    """What is known about a study's views so far."""

    instance_count: int  # distinct SOP Instance UIDs received
    has_frontal: bool
    has_lateral: bool
    expected: int | None  # the largest NumberOfStudyRelatedInstances any instance gave

    def __post_init__(self) -> None:
        if self.instance_count < 0 or (self.expected is not None and self.expected < 1):
            raise ValueError("instance counts cannot be negative or zero")

    def add(self, view: View | None, expected: int | None, new_instance: bool) -> StudyViews:
        """The state after one more instance (``new_instance``: a SOP Instance UID not seen yet)."""
        return StudyViews(
            instance_count=self.instance_count + (1 if new_instance else 0),
            has_frontal=self.has_frontal or view is View.FRONTAL,
            has_lateral=self.has_lateral or view is View.LATERAL,
            expected=max(filter(None, (self.expected, expected)), default=None),
        )


def views_complete(views: StudyViews) -> bool:
    """True when the study may complete after the grace instead of the quiet timer.

    A frontal view is required; then the expected count must be met, or, when no sender
    said how many to expect, a lateral view must have arrived as well.
    """
    if not views.has_frontal:
        return False
    if views.expected is not None:
        return views.instance_count >= views.expected
    return views.has_lateral


@dataclasses.dataclass(frozen=True, slots=True)
class Cutoffs:
    """The latest last-instance times that make a receiving study due at one moment.

    Attributes
    ----------
    quiet_before : datetime
        A study whose last instance arrived at or before this is due by the quiet timer.
    grace_before : datetime or None
        A study whose views are complete is due when its last instance arrived at or before
        this; None: the view rule is off.
    """

    quiet_before: dt.datetime
    grace_before: dt.datetime | None

    def due(self, last_instance_at: dt.datetime, *, views_complete: bool) -> CompletedBy | None:
        """Which rule makes a study due, the quiet timer first; None while it is not due."""
        if last_instance_at <= self.quiet_before:
            return CompletedBy.QUIET_TIMER
        if views_complete and self.grace_before is not None and last_instance_at <= self.grace_before:
            return CompletedBy.VIEWS_COMPLETE
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class CompletionRule:
    """The waits after a study's last instance: ``stable_seconds`` for every study (the quiet
    timer), ``grace_seconds`` for one whose views are complete (None turns the view rule off)."""

    stable_seconds: float
    grace_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.stable_seconds < 0 or (self.grace_seconds is not None and self.grace_seconds < 0):
            raise ValueError("completion waits cannot be negative")

    def cutoffs(self, now: dt.datetime) -> Cutoffs:
        """The cut-offs at ``now``."""
        return Cutoffs(
            quiet_before=now - dt.timedelta(seconds=self.stable_seconds),
            grace_before=None if self.grace_seconds is None else now - dt.timedelta(seconds=self.grace_seconds),
        )

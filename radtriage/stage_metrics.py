"""Per-study time to notification: each study's stage times, observed once into the histograms.

The times come from the timestamps the flow commits (first and last image, complete,
triaged), read from the events after the last one seen, so whichever process did the step
(listener, assembler, a worker on another host) the observation is made here, once.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from common import EventStage
from db.timings import StageTimes, last_event_id, stage_times_after
from radtriage import metrics


def _seconds(later, earlier) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def stage_seconds(times: StageTimes) -> dict[str, float]:
    """The stages this event ends, with their seconds (a stage without both times is left out)."""
    if times.stage is EventStage.COMPLETE:
        pairs = {"first_to_last_image": (times.last_image, times.first_image),
                 "last_image_to_complete": (times.completed, times.last_image)}
    else:
        pairs = {"complete_to_triaged": (times.triaged, times.completed),
                 "last_image_to_priority": (times.triaged, times.last_image)}
    found = {stage: _seconds(*pair) for stage, pair in pairs.items()}
    return {stage: seconds for stage, seconds in found.items() if seconds is not None}


class StageMetrics:
    """One round per poll: the stage times of studies completed or triaged since the last round.

    Starts after the newest event at its first round, so a restart does not count old
    studies again.
    """

    def __init__(self, *, reads: sessionmaker[Session],
                 record: Callable[[str, float], None] = metrics.record_stage) -> None:
        self._reads = reads
        self._record = record
        self._after: int | None = None

    def run_once(self) -> int:
        with self._reads() as session:
            if self._after is None:
                self._after = last_event_id(session)
                return 0
            found = stage_times_after(session, after_event_id=self._after)
        for times in found:
            for stage, seconds in stage_seconds(times).items():
                self._record(stage, seconds)
            self._after = times.event_id
        return len(found)

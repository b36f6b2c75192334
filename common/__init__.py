"""The shared vocabulary of radtriage: values every layer speaks, importing nothing of the project.

Priorities, the states a study, its draft and its exports move through, the task queues, the
event stages of a study's history, the UNVERIFIED disclaimer, the SOP classes accepted and the retry backoff.
"""

from common.disclaimer import DISCLAIMER
from common.events import EventStage
from common.priority import Priority
from common.retry import TASK_BACKOFF, Backoff
from common.sop_classes import (
    ACCEPTED_SOP_CLASSES,
    RADIOGRAPH_SOP_CLASSES,
    SECONDARY_CAPTURE,
)
from common.states import DraftStatus, ExportStatus, StudyStatus
from common.tasks import Queue

__all__ = [
    "ACCEPTED_SOP_CLASSES",
    "Backoff",
    "DISCLAIMER",
    "DraftStatus",
    "EventStage",
    "ExportStatus",
    "Priority",
    "Queue",
    "RADIOGRAPH_SOP_CLASSES",
    "SECONDARY_CAPTURE",
    "StudyStatus",
    "TASK_BACKOFF",
]

"""The shared vocabulary of radtriage: values every layer speaks, importing nothing of the project.

Priorities, the states a study, its draft and its exports move through, the task queues, the
event stages of a study's history, the UNVERIFIED disclaimer, the SOP classes accepted, the retry backoff,
the rule that decides when a study is complete and the reading order.
"""

from common.completion import CompletedBy, CompletionRule, Cutoffs, StudyViews, View, views_complete
from common.disclaimer import DISCLAIMER
from common.events import EventStage
from common.priority import Priority
from common.reading_order import Effective, Waits, effective_priority, reading_key
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
    "DISCLAIMER",
    "RADIOGRAPH_SOP_CLASSES",
    "SECONDARY_CAPTURE",
    "TASK_BACKOFF",
    "Backoff",
    "CompletedBy",
    "CompletionRule",
    "Cutoffs",
    "DraftStatus",
    "Effective",
    "EventStage",
    "ExportStatus",
    "Priority",
    "Queue",
    "StudyStatus",
    "StudyViews",
    "View",
    "Waits",
    "effective_priority",
    "reading_key",
    "views_complete",
]

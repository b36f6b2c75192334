"""Scoring: model back-ends, zero-shot finding heads and the urgency policy (pure: arrays in, results out).

Importing this package loads neither tensorflow nor transformers; they are imported when
a model is loaded.
"""

from scoring.cxr_foundation import CxrFoundation, ImageEmbedding, missing_parts
from scoring.errors import ModelUnavailable, PolicyError, ScoringError
from scoring.heads import FindingScores
from scoring.priority import Priority
from scoring.triage import Triager
from scoring.urgency import Assessment, Policy, assess, load_policy

__all__ = [
    "Assessment",
    "CxrFoundation",
    "FindingScores",
    "ImageEmbedding",
    "ModelUnavailable",
    "Policy",
    "PolicyError",
    "Priority",
    "ScoringError",
    "Triager",
    "assess",
    "load_policy",
    "missing_parts",
]

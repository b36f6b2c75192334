"""Scoring: model back-ends, finding heads (zero-shot and trained) and the urgency policy (pure: arrays in, results out).

Importing this package loads neither tensorflow, torch nor transformers; they are imported
when a model is loaded or an MLP head is trained.
"""

from scoring.cxr_foundation import CxrFoundation, missing_parts
from scoring.embedding import ImageEmbedding
from scoring.errors import ModelUnavailable, PolicyError, ScoringError
from scoring.heads import FindingScores, HeadSet
from scoring.trained_heads import TrainedHead, load_heads
from scoring.triage import Triager
from scoring.urgency import Assessment, Policy, assess, load_policy

__all__ = [
    "Assessment",
    "CxrFoundation",
    "FindingScores",
    "HeadSet",
    "ImageEmbedding",
    "ModelUnavailable",
    "Policy",
    "PolicyError",
    "ScoringError",
    "TrainedHead",
    "Triager",
    "assess",
    "load_heads",
    "load_policy",
    "missing_parts",
]

"""Errors raised by ``scoring/`` (model back-ends, heads, the urgency policy).

Exception tree::

    Exception
     └── ScoringError               a model or head failed on one input
          ├── ModelUnavailable      weights absent, incomplete, or ML libraries missing:
          │                         the daemon keeps running and priorities come from the order
          └── PolicyError           the urgency policy file is unreadable or invalid
                                    (also a ValueError)

Messages name files, model parts and error classes only, never PHI.
"""

from __future__ import annotations


class ScoringError(Exception):
    """A model back-end or scoring head could not produce a result."""


class ModelUnavailable(ScoringError):
    """The model cannot be used at all (missing weights or libraries); ``reason`` says why.

    Parameters
    ----------
    reason : str
        Human-readable and PHI-free, e.g. ``"missing: elixr-c-v2-pooled/saved_model.pb"``;
        it ends up in ``/healthz`` and in the log together with how to get the weights.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PolicyError(ScoringError, ValueError):
    """The urgency policy (``policy.toml``) is unreadable or fails validation."""

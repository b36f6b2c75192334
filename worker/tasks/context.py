"""Per-process worker state: database sessions, the policy and the models, all made lazily.

Nothing here is built before a fork: the engine and the models load in the process that
uses them, as a TensorFlow or torch op run in a parent hangs its prefork children.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from worker.tasks.config import WorkerConfig
from worker.tasks.failures import where

log = logging.getLogger(__name__)

WEIGHTS_HINT = (
    "CXR Foundation weights not found; triage uses the ordered priority only. To enable the AI, "
    "accept the licence of google/cxr-foundation on Hugging Face, then on a machine with access run "
    "`huggingface-cli download google/cxr-foundation --include 'elixr-c-v2-pooled/*' 'pax-elixr-b-text/*' "
    "--local-dir <folder>`, copy the folder here and set RADTRIAGE_CXR_FOUNDATION_DIR (see README)."
)


class _LoadOnce:
    """A model loaded on first use in this process: ``(value, None)`` or ``(None, reason)``."""

    def __init__(self, load) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._result: tuple | None = None

    def get(self) -> tuple:
        with self._lock:
            if self._result is None:
                self._result = self._load()
            return self._result


class WorkerContext:
    """What a triage task needs, created on first use in the current process."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.data_dir: Path = config.data_dir.resolve()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._policy = None
        self._triager = _LoadOnce(self._load_triager)
        self._drafter = _LoadOnce(self._load_drafter)

    @property
    def sessions(self) -> sessionmaker[Session]:
        with self._lock:
            if self._sessions is None or self._pid != os.getpid():
                self._sessions = make_session_factory(make_engine(self.config.database_url))
                self._pid = os.getpid()
            return self._sessions

    @property
    def policy(self):
        if self._policy is None:
            from scoring.urgency import load_policy

            self._policy = load_policy(self.config.policy_file)
        return self._policy

    def triager(self):
        """``(triager, None)`` when the model is usable, else ``(None, reason)``; loads once."""
        return self._triager.get()

    def drafter(self):
        """``(drafter, None)`` when MedGemma is usable, else ``(None, reason)``; loads once."""
        return self._drafter.get()

    def drafts_enabled(self) -> bool:
        """Whether MedGemma weights are present; looked up once per process, not per study."""
        return self._drafts_missing is None

    @functools.cached_property
    def _drafts_missing(self) -> str | None:
        return medgemma_missing(self.config.medgemma_model)

    def _load_triager(self) -> tuple:
        from scoring.backends import missing_for

        config = self.config.embedder
        label = "CXR Foundation" if config.embedder == "cxr_foundation" else "MedSigLIP"
        if missing_for(config):
            # How to get them is said once, by serve at start-up; here only that triage goes on without.
            log.info("%s weights not installed: triage uses the ordered priority", label)
            return None, f"{label} weights not installed"
        try:
            from scoring.triage import Triager

            triager = Triager.load(config, self.policy)  # embedder + trained heads
        except Exception as exc:  # a broken model must not take triage down with it
            log.error("%s failed to load (%s)", label, where(exc))
            return None, f"{label} failed to load ({type(exc).__name__})"
        log.info("%s loaded; trained heads for: %s", label, ", ".join(triager.heads.trained) or "none")
        return triager, None

    def _load_drafter(self) -> tuple:
        missing = medgemma_missing(self.config.medgemma_model)
        if missing:
            return None, missing
        try:
            from scoring.medgemma import MedGemmaDrafter

            drafter = MedGemmaDrafter.load(
                self.config.medgemma_model, max_new_tokens=self.config.medgemma_max_new_tokens
            )
        except Exception as exc:  # drafts off, triage unaffected
            log.error("MedGemma failed to load (%s)", where(exc))
            return None, f"MedGemma failed to load ({type(exc).__name__})"
        log.info("MedGemma loaded")
        return drafter, None


def medgemma_missing(model: str) -> str | None:
    """Why MedGemma cannot be used (PHI-free), or None; never imports torch (a missing ml
    extra is reported by ``scoring.hub``)."""
    from scoring.medgemma import missing_model

    return missing_model(model)

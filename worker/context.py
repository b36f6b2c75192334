"""Per-process worker state: database sessions, the policy and the model, all made lazily.

Nothing here is built before a fork: the engine and the model load in the process that
uses them (STACK.md: running a TF/torch op in a parent hangs prefork children).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from radtriage.settings import Settings

log = logging.getLogger(__name__)

WEIGHTS_HINT = (
    "CXR Foundation weights not found; triage uses the ordered priority only. To enable the AI, "
    "accept the licence of google/cxr-foundation on Hugging Face, then on a machine with access run "
    "`huggingface-cli download google/cxr-foundation --include 'elixr-c-v2-pooled/*' 'pax-elixr-b-text/*' "
    "--local-dir <folder>`, copy the folder here and set RADTRIAGE_CXR_FOUNDATION_DIR (see README)."
)


class WorkerContext:
    """What a triage task needs, created on first use in the current process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir: Path = settings.data_dir.resolve()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._policy = None
        self._triager = None
        self._unavailable: str | None = None
        self._model_checked = False
        self._drafter = None
        self._drafter_unavailable: str | None = None
        self._drafter_checked = False

    @property
    def sessions(self) -> sessionmaker[Session]:
        with self._lock:
            if self._sessions is None or self._pid != os.getpid():
                self._sessions = make_session_factory(make_engine(self.settings.effective_database_url))
                self._pid = os.getpid()
            return self._sessions

    @property
    def policy(self):
        if self._policy is None:
            from scoring.urgency import load_policy

            self._policy = load_policy(self.settings.policy_file)
        return self._policy

    def triager(self):
        """``(triager, None)`` when the model is usable, else ``(None, reason)``."""
        with self._lock:
            if not self._model_checked:
                self._model_checked = True
                self._load_model()
            return self._triager, self._unavailable

    def _load_model(self) -> None:
        settings = self.settings
        from scoring.backends import EmbedderConfig, missing_for  # embedder choice: settings.embedder

        config = EmbedderConfig.from_settings(settings)
        label = "CXR Foundation" if config.embedder == "cxr_foundation" else "MedSigLIP"
        missing = missing_for(config)
        if missing:
            self._unavailable = f"{label} weights not installed"
            # How to get them is said once, by serve at start-up; here only that triage goes on without.
            log.info("%s weights not installed: triage uses the ordered priority", label)
            return
        try:
            from scoring.triage import build_triager

            self._triager = build_triager(settings, self.policy)  # embedder + trained heads
            log.info("%s loaded; trained heads for: %s", label, ", ".join(self._triager.heads.trained) or "none")
        except Exception as exc:  # a broken model must not take triage down with it
            self._unavailable = f"{label} failed to load ({type(exc).__name__})"
            log.exception("%s failed to load", label)

    def drafts_enabled(self) -> bool:
        """Whether MedGemma weights are present (checked without loading them)."""
        return medgemma_missing(self.settings.medgemma_model) is None

    def drafter(self):
        """``(drafter, None)`` when MedGemma is usable, else ``(None, reason)``; loads once."""
        with self._lock:
            if not self._drafter_checked:
                self._drafter_checked = True
                self._load_drafter()
            return self._drafter, self._drafter_unavailable

    def _load_drafter(self) -> None:
        missing = medgemma_missing(self.settings.medgemma_model)
        if missing:
            self._drafter_unavailable = missing
            return
        try:
            from scoring.medgemma import MedGemmaDrafter

            self._drafter = MedGemmaDrafter.load(
                self.settings.medgemma_model, max_new_tokens=self.settings.medgemma_max_new_tokens
            )
            log.info("MedGemma loaded")
        except Exception as exc:  # drafts off, triage unaffected
            self._drafter_unavailable = f"MedGemma failed to load ({type(exc).__name__})"
            log.exception("MedGemma failed to load")


def medgemma_missing(model: str) -> str | None:
    """Why MedGemma cannot be used (PHI-free), or None; never imports torch."""
    try:
        from scoring.medgemma import missing_model

        return missing_model(model)
    except ImportError:
        return "MedGemma needs the ml extra (pip install 'radtriage[ml]')"

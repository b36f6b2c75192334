"""The worker's single entry into scoring: PNG in → image embedding + finding scores out.

:class:`Triager` loads the embedding back-end once, loads the site's trained heads, embeds
the policy's prompt pairs once for the findings still scored zero-shot, then scores one
image per call. Priority and urgency are decided separately by ``scoring.urgency.assess``
so stored embeddings can be rescored (``triager.heads.score_bytes``) under new heads or policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from scoring.backends import EmbedderConfig, default_heads_dir, load_backend
from scoring.cxr_foundation import CxrFoundation
from scoring.embedding import ImageEmbedding
from scoring.heads import FindingScores, HeadSet, PromptEmbeddings, embed_prompts
from scoring.trained_heads import TrainedHead, load_heads
from scoring.urgency import Policy

__all__ = ["EmbeddingBackend", "Triager", "build_triager"]


class EmbeddingBackend(Protocol):
    """What the heads need from a back-end (CXR Foundation, MedSigLIP)."""

    name: str  # "cxr-foundation", "medsiglip": stored with embeddings and heads

    def embed_image(self, png: bytes) -> ImageEmbedding: ...

    def embed_text(self, text: str) -> np.ndarray: ...


class Triager:
    """An embedder + the policy's heads, loaded once per worker process.

    Parameters
    ----------
    model_dir : Path
        Folder with the two CXR Foundation SavedModels.
    vocab_path : Path or None
        BERT ``vocab.txt``; None means ``model_dir / "vocab.txt"``.
    policy : Policy
        Supplies the findings and their prompt pairs.
    heads_dir : Path, optional
        Folder of trained heads (``<heads_dir>/cxr-foundation/<finding>.json``); none
        means every finding is scored zero-shot.

    Raises
    ------
    ModelUnavailable
        If the model cannot be loaded (the caller falls back to ordered priorities).
    ScoringError
        If embedding a prompt fails or a trained head file is invalid.
    """

    def __init__(self, model_dir: Path, vocab_path: Path | None, policy: Policy, heads_dir: Path | None = None) -> None:
        backend = CxrFoundation.load(Path(model_dir), vocab_path)
        self._init(backend, policy, load_heads(heads_dir, backend.name))

    @classmethod
    def from_backend(
        cls, backend: EmbeddingBackend, policy: Policy, trained: Mapping[str, TrainedHead] | None = None
    ) -> "Triager":
        """Build around an already loaded back-end (another model, or one shared process-wide)."""
        triager = cls.__new__(cls)
        triager._init(backend, policy, trained or {})
        return triager

    def _init(self, backend: EmbeddingBackend, policy: Policy, trained: Mapping[str, TrainedHead]) -> None:
        self.backend = backend
        self.policy = policy
        names = {f.name for f in policy.findings}
        trained = {name: head for name, head in trained.items() if name in names}
        # Prompt embeddings depend only on the policy: compute them once, not per image,
        # and only for the findings a trained head does not take over.
        zero_shot = [f for f in policy.findings if f.name not in trained]
        self.prompt_embeddings: PromptEmbeddings = embed_prompts(zero_shot, backend.embed_text)
        self.heads = HeadSet(policy.findings, self.prompt_embeddings, trained)

    @property
    def model_name(self) -> str:
        """The embedder's name, recorded with each score row."""
        return str(getattr(self.backend, "name", "cxr-foundation"))

    def score_png(self, png: bytes) -> tuple[ImageEmbedding, FindingScores]:
        """Embed one image and score every finding of the policy.

        Parameters
        ----------
        png : bytes
            16-bit grayscale PNG from ``dicom.pixels.to_model_png``.

        Raises
        ------
        ScoringError
            If the model call fails.
        """
        embedding = self.backend.embed_image(png)
        return embedding, self.score_embedding(embedding)

    def score_embedding(self, embedding: ImageEmbedding) -> FindingScores:
        """Score an embedding with the current heads (no model call)."""
        return self.heads.score(embedding)


def build_triager(settings: Any, policy: Policy) -> Triager:
    """The Triager the settings ask for: embedder (``cxr_foundation`` | ``medsiglip``) + heads.

    Parameters
    ----------
    settings : radtriage.settings.Settings or EmbedderConfig
        Reads ``embedder``, ``cxr_foundation_dir``, ``vocab_path``, ``medsiglip_model``
        and ``heads_dir`` (default ``<cxr_foundation_dir>/heads``).
    policy : Policy

    Raises
    ------
    ModelUnavailable
        If the embedder cannot be loaded.
    ScoringError
        If a prompt cannot be embedded or a trained head file is invalid.
    """
    config = settings if isinstance(settings, EmbedderConfig) else EmbedderConfig.from_settings(settings)
    backend = load_backend(config)
    return Triager.from_backend(backend, policy, load_heads(default_heads_dir(config), backend.name))

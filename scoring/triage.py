"""The worker's single entry into scoring: PNG in → image embedding + finding scores out.

:class:`Triager` loads the embedding back-end once, embeds the policy's prompt pairs once,
then scores one image per call. Priority and urgency are decided separately by
``scoring.urgency.assess`` so stored embeddings can be rescored under a new policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from scoring.cxr_foundation import CxrFoundation, ImageEmbedding
from scoring.heads import FindingScores, PromptEmbeddings, embed_prompts, score_findings
from scoring.urgency import Policy

__all__ = ["EmbeddingBackend", "Triager"]


class EmbeddingBackend(Protocol):
    """What the zero-shot heads need from a back-end (CXR Foundation today)."""

    def embed_image(self, png: bytes) -> ImageEmbedding: ...

    def embed_text(self, text: str) -> np.ndarray: ...


class Triager:
    """CXR Foundation + zero-shot heads for one policy, loaded once per worker process.

    Parameters
    ----------
    model_dir : Path
        Folder with the two CXR Foundation SavedModels.
    vocab_path : Path or None
        BERT ``vocab.txt``; None means ``model_dir / "vocab.txt"``.
    policy : Policy
        Supplies the findings and their prompt pairs.

    Raises
    ------
    ModelUnavailable
        If the model cannot be loaded (the caller falls back to ordered priorities).
    ScoringError
        If embedding a prompt fails.
    """

    def __init__(self, model_dir: Path, vocab_path: Path | None, policy: Policy) -> None:
        backend = CxrFoundation.load(Path(model_dir), vocab_path)
        self._init(backend, policy)

    @classmethod
    def from_backend(cls, backend: EmbeddingBackend, policy: Policy) -> "Triager":
        """Build around an already loaded back-end (another model, or one shared process-wide)."""
        triager = cls.__new__(cls)
        triager._init(backend, policy)
        return triager

    def _init(self, backend: EmbeddingBackend, policy: Policy) -> None:
        self.backend = backend
        self.policy = policy
        # Prompt embeddings depend only on the policy: compute them once, not per image.
        self.prompt_embeddings: PromptEmbeddings = embed_prompts(policy.findings, backend.embed_text)

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
        """Score a stored embedding again (e.g. after the policy's prompts changed)."""
        return score_findings(embedding, self.prompt_embeddings)

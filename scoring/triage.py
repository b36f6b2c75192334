"""The worker's single entry into scoring: PNG in → image embedding + finding scores out.

:class:`Triager` loads the embedding back-end once, loads the site's trained heads, embeds
the policy's prompt pairs once for the findings still scored zero-shot, then scores one
image per call. Priority and urgency are decided separately by ``scoring.urgency.assess``
so stored embeddings can be rescored (``triager.heads.score_bytes``) under new heads or policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from scoring.backends import EmbedderConfig, default_heads_dir, load_backend
from scoring.embedding import ImageEmbedding
from scoring.evaluation import validated_findings
from scoring.heads import FindingScores, HeadSet, PromptEmbeddings, embed_prompts
from scoring.trained_heads import TrainedHead, load_heads
from scoring.urgency import Policy

__all__ = ["EmbeddingBackend", "Triager"]


class EmbeddingBackend(Protocol):
    """What the heads need from a back-end (CXR Foundation, MedSigLIP)."""

    name: str  # "cxr-foundation", "medsiglip": stored with embeddings and heads

    def embed_image(self, png: bytes) -> ImageEmbedding: ...

    def embed_text(self, text: str) -> np.ndarray: ...


class Triager:
    """An embedder + the policy's heads, loaded once per worker process; build with :meth:`load`.

    Parameters
    ----------
    backend : EmbeddingBackend
        A loaded embedder (:func:`scoring.backends.load_backend`, or a stand-in).
    policy : Policy
        Supplies the findings and their prompt pairs.
    trained : mapping of str to TrainedHead, optional
        Trained heads by finding (those of other findings are ignored); the remaining
        findings are scored zero-shot.
    validated : iterable of str, optional
        Zero-shot findings a local validation record covers (:meth:`load` reads them from
        ``<heads_dir>/<embedder>/validations/``).

    Raises
    ------
    PolicyError
        If the policy was written for another embedder's scores.
    ScoringError
        If embedding a prompt fails.
    """

    def __init__(
        self,
        backend: EmbeddingBackend,
        policy: Policy,
        trained: Mapping[str, TrainedHead] | None = None,
        validated: Iterable[str] = (),
    ) -> None:
        policy.check_embedder(str(getattr(backend, "name", "cxr-foundation")))
        self.backend = backend
        self.policy = policy
        names = {f.name for f in policy.findings}
        trained = {name: head for name, head in (trained or {}).items() if name in names}
        # Prompt embeddings depend only on the policy: compute them once, not per image,
        # and only for the findings a trained head does not take over.
        zero_shot = [f for f in policy.findings if f.name not in trained]
        self.prompt_embeddings: PromptEmbeddings = embed_prompts(zero_shot, backend.embed_text)
        self.heads = HeadSet(policy.findings, self.prompt_embeddings, trained, validated)

    @classmethod
    def load(cls, config: EmbedderConfig, policy: Policy) -> Triager:
        """The configured embedder (``cxr_foundation`` | ``medsiglip``) with its trained heads.

        Heads come from ``<heads_dir>/<embedder name>/`` (:func:`scoring.backends.default_heads_dir`).

        Raises
        ------
        ModelUnavailable
            If the embedder cannot be loaded (the caller falls back to ordered priorities).
        ScoringError
            If a prompt cannot be embedded or a trained head file is invalid.
        """
        backend = load_backend(config)
        heads_dir = default_heads_dir(config)
        validated = validated_findings(heads_dir, backend.name, policy.rules)
        return cls(backend, policy, load_heads(heads_dir, backend.name), validated)

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


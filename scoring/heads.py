"""Finding heads: image embedding → one score per finding, zero-shot or from a trained head.

Google's zero-shot recipe (notebook ``classify_images_with_natural_language`` of Google-Health/cxr-foundation):
``sim(t) = max_i cos(img[i], t)`` over the 32 contrastive image tokens and
``score = sim(positive prompt) - sim(negative prompt)``; no softmax. Scores are therefore
uncalibrated differences of cosines, roughly in [-1, 1]; thresholds live in the policy.
A trained head (``scoring.trained_heads``) replaces the zero-shot head of its finding and
gives a probability instead; :class:`HeadSet` applies whichever each finding has, and
``FindingScores`` remembers which kind produced each score and at what operating threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from scoring.embedding import ImageEmbedding
from scoring.errors import ScoringError
from scoring.trained_heads import TrainedHead

__all__ = [
    "Finding",
    "FindingScores",
    "HeadSet",
    "PromptEmbeddings",
    "embed_prompts",
    "highest",
    "max_cosine",
    "score_findings",
    "zero_shot_score",
]

_EPS = 1e-12


@dataclass(frozen=True, slots=True)
class Finding:
    """A finding scored zero-shot from a (positive, negative) prompt pair."""

    name: str
    prompt_positive: str
    prompt_negative: str

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"finding name must be a lower-case identifier, got {self.name!r}")
        if not self.prompt_positive.strip() or not self.prompt_negative.strip():
            raise ValueError(f"finding {self.name!r} needs a non-empty positive and negative prompt")


@dataclass(frozen=True, slots=True, eq=False)
class FindingScores(Mapping[str, float]):
    """Score per finding name; read-only, every score a finite float.

    Behaves as a ``Mapping[str, float]`` (``scores["pneumothorax"]``, ``dict(scores)``).

    Attributes
    ----------
    scores : Mapping[str, float]
        Zero-shot score (difference of cosines) or trained-head probability per finding.
    head_thresholds : Mapping[str, float]
        For findings scored by a trained head: that head's operating threshold. A
        finding absent from it was scored zero-shot.
    validated : frozenset of str
        Zero-shot findings whose rule a local validation record covers
        (``scoring.evaluation.validated_findings``); trained heads count as validated anyway.
    """

    scores: Mapping[str, float]
    head_thresholds: Mapping[str, float] = field(default_factory=dict)
    validated: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        checked: dict[str, float] = {}
        for name, value in dict(self.scores).items():
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"score for {name!r} is not finite")
            checked[str(name)] = number
        thresholds = {str(k): float(v) for k, v in dict(self.head_thresholds).items()}
        unknown = set(thresholds) - set(checked)
        if unknown:
            raise ValueError(f"head threshold for unscored finding(s) {sorted(unknown)}")
        if any(not (0.0 <= v <= 1.0) or not (0.0 <= checked[k] <= 1.0) for k, v in thresholds.items()):
            raise ValueError("trained-head scores and thresholds must be probabilities")
        validated = frozenset(str(name) for name in self.validated)
        if validated - set(checked):
            raise ValueError(f"validation for unscored finding(s) {sorted(validated - set(checked))}")
        object.__setattr__(self, "validated", validated)
        object.__setattr__(self, "scores", MappingProxyType(checked))
        object.__setattr__(self, "head_thresholds", MappingProxyType(thresholds))

    def __getitem__(self, name: str) -> float:
        return self.scores[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)

    def is_trained(self, name: str) -> bool:
        """Whether a trained head (probability) rather than the zero-shot head scored ``name``."""
        return name in self.head_thresholds

    def is_validated(self, name: str) -> bool:
        """Whether ``name`` was scored by a trained head or by a locally validated zero-shot rule."""
        return self.is_trained(name) or name in self.validated

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}={v:.3f}{'(p)' if self.is_trained(k) else ''}" for k, v in self.scores.items()
        )
        return f"FindingScores({inner})"


# finding name → (positive, negative) contrastive text embeddings, each float32 (128,)
PromptEmbeddings = Mapping[str, tuple[np.ndarray, np.ndarray]]


def max_cosine(tokens: np.ndarray, text: np.ndarray) -> float:
    """Highest cosine similarity between any image token and the text embedding.

    Parameters
    ----------
    tokens : numpy.ndarray
        Contrastive image tokens, (32, 128) (any (n, d) works).
    text : numpy.ndarray
        Contrastive text embedding, (d,).
    """
    tokens = np.asarray(tokens, dtype=np.float64)
    text = np.asarray(text, dtype=np.float64).reshape(-1)
    if tokens.ndim != 2 or tokens.shape[1] != text.shape[0]:
        raise ValueError(f"token shape {tokens.shape} does not match text shape {text.shape}")
    # Normalise here even though the model's outputs are already L2-normalised: stored or
    # third-party embeddings may not be, and cosine is what the recipe specifies.
    token_norms = np.linalg.norm(tokens, axis=1) + _EPS
    cosines = tokens @ text / (token_norms * (np.linalg.norm(text) + _EPS))
    return float(cosines.max())


def zero_shot_score(tokens: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """``max_cosine(tokens, positive) - max_cosine(tokens, negative)``; > 0 leans positive."""
    return max_cosine(tokens, positive) - max_cosine(tokens, negative)


def embed_prompts(
    findings: Iterable[Finding], embed_text: Callable[[str], np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Embed every finding's prompt pair once (done at start-up, then reused per image).

    Parameters
    ----------
    findings : iterable of Finding
    embed_text : callable
        E.g. ``CxrFoundation.embed_text``.
    """
    return {f.name: (embed_text(f.prompt_positive), embed_text(f.prompt_negative)) for f in findings}


def score_findings(embedding: ImageEmbedding | np.ndarray, prompts: PromptEmbeddings) -> FindingScores:
    """Score one image against every finding's prompt pair.

    Parameters
    ----------
    embedding : ImageEmbedding or numpy.ndarray
        The image embedding, or its contrastive tokens (32, 128) directly (e.g. Google's
        precomputed 4096-float vectors reshaped).
    prompts : PromptEmbeddings
        From :func:`embed_prompts`.

    Returns
    -------
    FindingScores
        One zero-shot score per finding in ``prompts``.
    """
    tokens = embedding.contrastive if isinstance(embedding, ImageEmbedding) else np.asarray(embedding)
    return FindingScores({name: zero_shot_score(tokens, pos, neg) for name, (pos, neg) in prompts.items()})


def highest(per_image: Sequence[FindingScores]) -> FindingScores:
    """A study's scores from its images': a finding seen on any view counts for the study.

    Raises
    ------
    ValueError
        If ``per_image`` is empty or the images were scored on different findings or heads.
    """
    if not per_image:
        raise ValueError("no image scores to combine")
    names = set(per_image[0])
    thresholds = dict(per_image[0].head_thresholds)
    if any(set(scores) != names for scores in per_image):
        raise ValueError("image scores cover different findings")
    if any(dict(scores.head_thresholds) != thresholds or scores.validated != per_image[0].validated
           for scores in per_image):
        raise ValueError("image scores come from different heads")
    combined = {name: max(scores[name] for scores in per_image) for name in per_image[0]}
    return FindingScores(combined, thresholds, per_image[0].validated)


class HeadSet:
    """The head for every finding of a policy: trained where a head exists, zero-shot otherwise.

    Parameters
    ----------
    findings : iterable of Finding
        The policy's findings, in order.
    prompts : PromptEmbeddings
        Prompt-pair embeddings for (at least) every finding without a trained head.
    trained : Mapping[str, TrainedHead], optional
        Trained heads by finding name; heads for findings the policy does not name are
        ignored.
    validated : iterable of str, optional
        Zero-shot findings a local validation record covers (passed on with every score).

    Raises
    ------
    ScoringError
        If a finding has neither a trained head nor prompt embeddings, or trained heads
        come from different embedders.
    """

    def __init__(
        self,
        findings: Iterable[Finding],
        prompts: PromptEmbeddings,
        trained: Mapping[str, TrainedHead] | None = None,
        validated: Iterable[str] = (),
    ) -> None:
        trained = dict(trained or {})
        self.names = tuple(f.name for f in findings)
        self.validated = frozenset(validated) & set(self.names)
        self.trained = {name: trained[name] for name in self.names if name in trained}
        self.prompts = {name: prompts[name] for name in self.names if name not in self.trained and name in prompts}
        lacking = [name for name in self.names if name not in self.trained and name not in self.prompts]
        if lacking:
            raise ScoringError(f"no head for finding(s): {', '.join(lacking)}")
        if len({head.embedder for head in self.trained.values()}) > 1:
            raise ScoringError("trained heads come from different embedders")

    def kind(self, name: str) -> str:
        """``"trained"`` or ``"zero-shot"``."""
        return "trained" if name in self.trained else "zero-shot"

    def score(self, embedding: ImageEmbedding) -> FindingScores:
        """Score one image with every head.

        Raises
        ------
        ScoringError
            If a trained head belongs to another embedder than the embedding's.
        """
        zero_shot = score_findings(embedding, self.prompts) if self.prompts else {}
        trained = {name: head.predict(embedding) for name, head in self.trained.items()}
        scores = {name: trained[name] if name in trained else zero_shot[name] for name in self.names}
        thresholds = {name: head.operating_threshold for name, head in self.trained.items()}
        return FindingScores(scores, thresholds, self.validated - set(self.trained))

    def score_bytes(self, data: bytes) -> FindingScores:
        """Rescore a stored embedding (``ImageEmbedding.to_bytes``) without any model call.

        Raises
        ------
        ValueError
            If the bytes are not a stored embedding.
        ScoringError
            As :meth:`score`.
        """
        return self.score(ImageEmbedding.from_bytes(data))

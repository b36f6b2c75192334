"""Embedder registry: a setting's name → the back-end that loads it (CXR Foundation, MedSigLIP).

Both back-ends satisfy ``scoring.triage.EmbeddingBackend``: ``name``, ``embed_image(png)``
and ``embed_text(text)``. Nothing here imports an ML library until a back-end is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.errors import ModelUnavailable

__all__ = ["EMBEDDERS", "EmbedderConfig", "default_heads_dir", "load_backend", "missing_for"]


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    """Which embedder, and where its weights and trained heads are (built by ``radtriage`` from its settings)."""

    embedder: str = "cxr_foundation"
    cxr_foundation_dir: Path = Path("models/cxr-foundation")
    vocab_path: Path | None = None
    medsiglip_model: str = "google/medsiglip-448"
    heads_dir: Path | None = None
    # CPU threads a model call may use in this process; None: the library's default (every
    # core). N worker processes on a machine share its cores instead of each spreading over
    # all of them and slowing the others down (``radtriage worker --concurrency``).
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.embedder not in EMBEDDERS:
            raise ValueError(f"embedder must be one of {', '.join(EMBEDDERS)}, got {self.embedder!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


def default_heads_dir(config: EmbedderConfig) -> Path:
    """``heads_dir`` if set, else ``<cxr_foundation_dir>/heads`` (heads sit in per-embedder subfolders)."""
    return Path(config.heads_dir) if config.heads_dir is not None else Path(config.cxr_foundation_dir) / "heads"


def _load_cxr(config: EmbedderConfig) -> Any:
    from scoring.cxr_foundation import CxrFoundation

    return CxrFoundation.load(config.cxr_foundation_dir, config.vocab_path, threads=config.threads)


def _load_medsiglip(config: EmbedderConfig) -> Any:
    from scoring.medsiglip import MedSiglip

    return MedSiglip.load(config.medsiglip_model, threads=config.threads)


def _missing_cxr(config: EmbedderConfig) -> list[str]:
    from scoring.cxr_foundation import missing_parts

    return missing_parts(config.cxr_foundation_dir, config.vocab_path)


def _missing_medsiglip(config: EmbedderConfig) -> list[str]:
    from scoring.medsiglip import missing_parts

    return missing_parts(config.medsiglip_model)


# name → (loader, "what is missing" check); add a back-end by adding a line.
_REGISTRY: dict[str, tuple[Callable[[EmbedderConfig], Any], Callable[[EmbedderConfig], list[str]]]] = {
    "cxr_foundation": (_load_cxr, _missing_cxr),
    "medsiglip": (_load_medsiglip, _missing_medsiglip),
}
EMBEDDERS = tuple(_REGISTRY)


def load_backend(config: EmbedderConfig) -> Any:
    """Load the configured embedder (once per worker process: it is slow).

    Raises
    ------
    ModelUnavailable
        If the weights or ML libraries are missing or the model cannot be loaded.
    """
    loader, _ = _REGISTRY[config.embedder]
    return loader(config)


def missing_for(config: EmbedderConfig) -> list[str]:
    """What the configured embedder lacks, in words (empty = looks complete); loads nothing."""
    _, check = _REGISTRY[config.embedder]
    try:
        return check(config)
    except ModelUnavailable as exc:
        return [exc.reason]

"""Batch: DICOM files on disk → image embeddings with the configured embedder (``radtriage probe --dicom``).

The same path as triage (``dicom.pixels.to_model_png`` → ``embed_image``), one image per
call; nothing is stored. A file that cannot be embedded is reported, not fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from dicom.errors import UnscorableImage
from dicom.pixels import to_model_png
from scoring.backends import EmbedderConfig, load_backend
from scoring.embedding import ImageEmbedding
from scoring.errors import ScoringError

__all__ = ["EmbeddedFiles", "Progress", "embed_files"]

# Wraps the iteration over the files: (items, label, total) → the same items, e.g. drawing a bar.
Progress = Callable[[Iterable[str], str, int], Iterator[str]]


@dataclass(frozen=True, slots=True)
class EmbeddedFiles:
    """What :func:`embed_files` made.

    Attributes
    ----------
    embeddings : dict of str to ImageEmbedding
        By file name as given (relative to the folder).
    refused : list of (int, str)
        Position in the given names and a PHI-free reason, per file not embedded.
    """

    embeddings: dict[str, ImageEmbedding]
    refused: list[tuple[int, str]]


def embed_files(
    config: EmbedderConfig, folder: Path, names: Sequence[str], *, progress: Progress | None = None
) -> EmbeddedFiles:
    """Embed each file ``folder / name`` with the embedder ``config`` names.

    Parameters
    ----------
    config : EmbedderConfig
        Which embedder and where its weights are.
    folder : Path
        Folder the names are relative to.
    names : sequence of str
        File names, e.g. the id column of a label table.
    progress : callable, optional
        Wraps the iteration (label ``"embedding"``), e.g. to draw a progress bar.

    Raises
    ------
    scoring.errors.ModelUnavailable
        If the embedder cannot be loaded.
    """
    backend = load_backend(config)
    embeddings: dict[str, ImageEmbedding] = {}
    refused: list[tuple[int, str]] = []
    items = progress(names, "embedding", len(names)) if progress is not None else iter(names)
    for index, name in enumerate(items):
        try:
            png = to_model_png(pydicom.dcmread(folder / name, force=True))
            embeddings[name] = backend.embed_image(png)
        except (OSError, InvalidDicomError, UnscorableImage, ScoringError) as exc:
            # UnscorableImage carries a PHI-free reason; other errors are named by their type only.
            refused.append((index, getattr(exc, "reason", type(exc).__name__)))
    return EmbeddedFiles(embeddings, refused)

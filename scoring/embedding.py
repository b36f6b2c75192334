"""The image embedding a back-end returns and the DB stores, so studies can be rescored later.

One value type for every embedder: CXR Foundation fills both token sets with their fixed
shapes (32×128 contrastive, 32×768 general); MedSigLIP fills one contrastive token
(1×1152) and no general tokens. Serialised as ``.npz`` without pickle.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = ["CXR_FOUNDATION", "KNOWN_SHAPES", "ImageEmbedding"]

CXR_FOUNDATION = "cxr-foundation"
# Shapes that are checked exactly for the embedders whose outputs we know by heart.
KNOWN_SHAPES: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {
    CXR_FOUNDATION: ((32, 128), (32, 768)),
}
_BAD_NPZ = (OSError, KeyError, ValueError, EOFError, AttributeError, TypeError, zipfile.BadZipFile)


@dataclass(frozen=True, slots=True, eq=False)
class ImageEmbedding:
    """Embedding of one image.

    Attributes
    ----------
    contrastive : numpy.ndarray
        float32 (tokens, d) in the text tower's space: CXR Foundation's
        ``all_contrastive_img_emb`` (32, 128), MedSigLIP's image embedding (1, 1152).
        Zero-shot heads compare text with these; trained heads read their token mean.
    general : numpy.ndarray or None
        CXR Foundation's ``img_emb`` (32, 768); None for embedders without one and for
        precomputed embeddings that only kept the contrastive tokens.
    model : str
        Which embedder made it (``"cxr-foundation"``, ``"medsiglip"``); a head trained on
        one embedder's space must not score another's.
    """

    contrastive: np.ndarray
    general: np.ndarray | None = None
    model: str = CXR_FOUNDATION

    def __post_init__(self) -> None:
        known = KNOWN_SHAPES.get(self.model)
        for name, shape in (("contrastive", known[0] if known else None), ("general", known[1] if known else None)):
            value = getattr(self, name)
            if value is None and name == "general":
                continue  # optional: trained and zero-shot heads only read the contrastive tokens
            _check(name, value, shape)
            # A private read-only copy: the embedding is a value, nobody may edit it later.
            frozen = value.copy()
            frozen.flags.writeable = False
            object.__setattr__(self, name, frozen)

    @property
    def pooled(self) -> np.ndarray:
        """Mean of the contrastive tokens (float32 (d,)): the input of trained heads.

        The reference data-efficient classifier pools the 32×128 tokens the same way
        (``GlobalAveragePooling1D`` in Google's ``train_data_efficient_classifier`` notebook).
        """
        return self.contrastive.mean(axis=0, dtype=np.float64).astype(np.float32)

    def to_bytes(self) -> bytes:
        """Serialise as an ``.npz`` (no pickle) for a DB ``LargeBinary`` column."""
        arrays = {"contrastive": self.contrastive, "model": np.array(self.model)}
        if self.general is not None:
            arrays["general"] = self.general
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ImageEmbedding":
        """Inverse of :meth:`to_bytes` (rows written before ``model`` was stored are CXR Foundation).

        Raises
        ------
        ValueError
            If the bytes are not an embedding written by :meth:`to_bytes`.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                contrastive = npz["contrastive"]
                general = npz["general"] if "general" in npz.files else None
                model = str(npz["model"]) if "model" in npz.files else CXR_FOUNDATION
        # np.load signals "not an npz" in many ways (a pickle refusal is a ValueError).
        except _BAD_NPZ as exc:
            raise ValueError(f"not a stored image embedding ({type(exc).__name__})") from exc
        return cls(contrastive=contrastive, general=general, model=model)


def _check(name: str, value: object, shape: tuple[int, int] | None) -> None:
    """Refuse anything but a finite float32 token matrix (of ``shape`` when known)."""
    ok = isinstance(value, np.ndarray) and value.dtype == np.float32 and value.ndim == 2 and value.size > 0
    if ok and shape is not None:
        ok = value.shape == shape
    if not ok:
        found = f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
        raise ValueError(f"{name} must be float32 {shape or '(tokens, d)'}, got {found}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} contains non-finite values")

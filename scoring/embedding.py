"""The image embedding a back-end returns and the DB stores, so studies can be rescored later.

One value type for every embedder: CXR Foundation fills both token sets with their fixed
shapes (32×128 contrastive, 32×768 general); MedSigLIP fills one contrastive token
(1×1152) and no general tokens. Serialised as ``.npz`` without pickle; triage stores the
compact form (contrastive tokens in half precision, no general tokens: what every head reads).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = ["COMPACT_TOLERANCE", "CXR_FOUNDATION", "KNOWN_SHAPES", "ImageEmbedding"]

CXR_FOUNDATION = "cxr-foundation"
# Shapes that are checked exactly for the embedders whose outputs we know by heart.
KNOWN_SHAPES: dict[str, tuple[tuple[int, int], tuple[int, int] | None]] = {
    CXR_FOUNDATION: ((32, 128), (32, 768)),
}
# Largest difference a zero-shot score may show between the compact and the full embedding:
# half precision keeps 11 significant bits, so a cosine moves by a few 1e-5 (at most ~5e-4).
COMPACT_TOLERANCE = 1e-3
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
    token_mean : numpy.ndarray or None
        float32 (d,): the full-precision mean of the contrastive tokens, kept by the compact
        form (whose tokens are rounded) so trained heads read exactly what they would have;
        None: computed from ``contrastive``.
    """

    contrastive: np.ndarray
    general: np.ndarray | None = None
    model: str = CXR_FOUNDATION
    token_mean: np.ndarray | None = None

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
        mean = self.token_mean
        if mean is not None:
            _check("token_mean", mean.reshape(1, -1) if isinstance(mean, np.ndarray) else mean,
                   (1, self.contrastive.shape[1]))
            frozen = mean.reshape(-1).copy()
            frozen.flags.writeable = False
            object.__setattr__(self, "token_mean", frozen)

    @property
    def pooled(self) -> np.ndarray:
        """Mean of the contrastive tokens (float32 (d,)): the input of trained heads.

        The reference data-efficient classifier pools the 32×128 tokens the same way
        (``GlobalAveragePooling1D`` in Google's ``train_data_efficient_classifier`` notebook).
        """
        if self.token_mean is not None:
            return self.token_mean
        return self.contrastive.mean(axis=0, dtype=np.float64).astype(np.float32)

    def to_bytes(self, *, compact: bool = False) -> bytes:
        """Serialise as an ``.npz`` (no pickle) for a DB ``LargeBinary`` column.

        ``compact`` keeps only what the heads read: the contrastive tokens in half precision
        (zero-shot heads) and their mean in float32 (trained heads), 9 KB per CXR Foundation
        image instead of 115.5 KB (the general tokens alone are 96 KB). Zero-shot heads score it
        within :data:`COMPACT_TOLERANCE` of the full embedding, trained heads exactly; read back,
        the tokens are float32 again. A single token, or tokens beyond half precision's range, are
        kept in float32.
        """
        contrastive, general = self.contrastive, self.general
        # A single token (MedSigLIP) is its own mean: it stays float32, and nothing is added.
        halved = compact and contrastive.shape[0] > 1 and np.abs(contrastive).max() <= np.finfo(np.float16).max
        if halved:
            contrastive = contrastive.astype(np.float16)
        arrays = {"contrastive": contrastive, "model": np.array(self.model)}
        if general is not None and not compact:
            arrays["general"] = general
        if halved:
            arrays["token_mean"] = self.pooled
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageEmbedding:
        """Inverse of :meth:`to_bytes` (rows written before ``model`` was stored are CXR Foundation).

        Raises
        ------
        ValueError
            If the bytes are not an embedding written by :meth:`to_bytes`.
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                contrastive = npz["contrastive"]
                if contrastive.dtype == np.float16:  # the compact form
                    contrastive = contrastive.astype(np.float32)
                general = npz["general"] if "general" in npz.files else None
                model = str(npz["model"]) if "model" in npz.files else CXR_FOUNDATION
                token_mean = npz["token_mean"] if "token_mean" in npz.files else None
        # np.load signals "not an npz" in many ways (a pickle refusal is a ValueError).
        except _BAD_NPZ as exc:
            raise ValueError(f"not a stored image embedding ({type(exc).__name__})") from exc
        return cls(contrastive=contrastive, general=general, model=model, token_mean=token_mean)


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

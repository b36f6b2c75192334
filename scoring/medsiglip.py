"""Optional MedSigLIP back-end (``google/medsiglip-448``): PNG → image embedding; prompt → text embedding.

Same interface as ``scoring.cxr_foundation.CxrFoundation`` (``name``, ``embed_image``,
``embed_text``), so the zero-shot and trained heads, the policy and the worker need no
change; chosen with the ``embedder = "medsiglip"`` setting. Loaded with transformers'
``AutoModel`` + ``AutoProcessor`` from a folder or hub id (``HF_HUB_OFFLINE`` honoured).

Image path, as Google's MedSigLIP serving code: the PNG from ``dicom.pixels`` is min-max
scaled to [0, 1] in floating point (the same per-image scaling ELIXR-C applies inside its
graph; no 8-bit rounding, so 16-bit sources keep their precision up to the resize),
zero-padded to a square, resized bilinearly without antialiasing to the processor's size
(448×448) and normalised with the processor's mean and std. Text path: SigLIP was trained with
``padding="max_length"`` (64 tokens); its pooled output is taken as is. Zero-shot scores use
the same recipe as CXR Foundation — max cosine over the image tokens (here one) with the
positive prompt minus that with the negative — so the policy's thresholds keep their
meaning but must be calibrated for this embedder.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from scoring import hub
from scoring.embedding import ImageEmbedding
from scoring.errors import ModelUnavailable, ScoringError

__all__ = ["DEFAULT_MODEL", "MODEL_NAME", "MedSiglip", "missing_parts"]

DEFAULT_MODEL = "google/medsiglip-448"
MODEL_NAME = "medsiglip"  # ImageEmbedding.model, score rows, heads/<name>/
TEXT_LENGTH = 64  # SigLIP's text length; prompts are padded to it as in training
_TEXT_CACHE_LIMIT = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def missing_parts(model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """What is missing for MedSigLIP to load, in words (empty = looks usable); no torch.

    See :func:`scoring.hub.missing_model`: a folder needs ``config.json``; a hub id needs it
    in the local Hugging Face cache (``cache_dir``, default ``HF_HUB_CACHE``) when offline.
    """
    reason = hub.missing_model("MedSigLIP", model, cache_dir=cache_dir)
    return [reason] if reason else []


class MedSiglip:
    """A loaded SigLIP model and processor; build with :meth:`load`."""

    name = MODEL_NAME

    def __init__(self, torch: Any, model: Any, processor: Any) -> None:
        self._torch = torch
        self._model = model
        self._processor = processor
        self._text_cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, model: str | os.PathLike[str] = DEFAULT_MODEL, *, threads: int | None = None) -> MedSiglip:
        """Load model and processor from a folder or hub id (CPU, float32, eval mode).

        ``threads``: CPU threads torch may use in this process (None: torch's default).

        Raises
        ------
        ModelUnavailable
            If torch/transformers are missing or the weights cannot be found or loaded.
        """
        missing = missing_parts(model)
        if missing:
            raise ModelUnavailable("MedSigLIP is unavailable: " + "; ".join(missing))
        torch, transformers = hub.import_ml("MedSigLIP")
        if threads is not None:
            torch.set_num_threads(threads)
        processor = hub.load_pretrained("MedSigLIP", transformers.AutoProcessor, model)
        net = hub.load_pretrained("MedSigLIP", transformers.AutoModel, model)
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(net, method):
                raise ModelUnavailable(f"{type(net).__name__} is not a SigLIP-style model (no {method})")
        net.eval()
        return cls(torch, net, processor)

    def embed_image(self, png: bytes) -> ImageEmbedding:
        """Embed one image (a PNG from ``dicom.pixels.to_model_png``) → contrastive (1, d).

        Raises
        ------
        ScoringError
            If the bytes are not a PNG or the model call fails.
        """
        if not png.startswith(_PNG_SIGNATURE):
            raise ScoringError("image input is not a PNG")
        try:
            pixels = self._pixel_values(png)
            with self._torch.inference_mode():
                out = self._model.get_image_features(pixel_values=pixels)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ScoringError(f"medsiglip image call failed: {type(exc).__name__}") from exc
        vector = _pooled(out).reshape(1, -1)
        return ImageEmbedding(contrastive=_l2(vector), general=None, model=MODEL_NAME)

    def _pixel_values(self, png: bytes) -> Any:
        """(1, 3, S, S) model input: [0, 1] → pad to square → bilinear resize → normalise."""
        torch = self._torch
        images = self._processor.image_processor
        size = images.size
        side = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
        square = torch.from_numpy(hub.pad_to_square(_unit_range(png)))[None, None]
        # tf.image.resize(method="bilinear", antialias=False) in the reference = half-pixel bilinear.
        resized = torch.nn.functional.interpolate(square, size=side, mode="bilinear", align_corners=False)
        mean = torch.tensor(images.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(images.image_std, dtype=torch.float32).view(1, 3, 1, 1)
        return (resized.expand(1, 3, *side) - mean) / std

    def embed_text(self, text: str) -> np.ndarray:
        """Embed one text (float32 (d,), L2-normalised, read-only); cached per text.

        Raises
        ------
        ScoringError
            If the model call fails.
        """
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        try:
            inputs = self._processor(
                text=[text], padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_tensors="pt"
            )
            with self._torch.inference_mode():
                out = self._model.get_text_features(input_ids=inputs["input_ids"])
        except (RuntimeError, ValueError) as exc:
            raise ScoringError(f"medsiglip text call failed: {type(exc).__name__}") from exc
        embedding = _l2(_pooled(out).reshape(1, -1))[0]
        embedding.flags.writeable = False  # shared through the cache
        if len(self._text_cache) < _TEXT_CACHE_LIMIT:
            self._text_cache[text] = embedding
        return embedding


def _unit_range(png: bytes) -> np.ndarray:
    """Grayscale PNG → float32 (H, W) in [0, 1], min-max scaled per image (no 8-bit rounding)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError("expected a grayscale PNG")
    lo, hi = arr.min(), arr.max()
    scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    return scaled.astype(np.float32)


def _pooled(out: Any) -> np.ndarray:
    """The pooled embedding whether transformers returns a tensor (4.x) or an output (5.x)."""
    tensor = getattr(out, "pooler_output", out)
    array = tensor.detach().float().cpu().numpy()
    if array.ndim != 2 or array.shape[0] != 1:
        raise ScoringError(f"medsiglip returned shape {array.shape}, expected (1, d)")
    return array


def _l2(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation as float32 (what SigLIP does before its logits)."""
    x = x.astype(np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


"""CXR Foundation back-end: 16-bit PNG → ELIXR-C → Q-Former → image tokens; prompt → text embedding.

Loads Google's two TF SavedModels (``elixr-c-v2-pooled``, ``pax-elixr-b-text``) from a local
folder and calls them the way Google's serving code does (``predictor.py`` in
Google-Health/cxr-foundation): one image a call, keyword arguments, zero text for image
calls and a zero image for text calls.
tensorflow is imported only inside :meth:`CxrFoundation.load`, so :func:`missing_parts`
serves the daemon's health check without ML libraries.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from scoring.embedding import CXR_FOUNDATION, ImageEmbedding
from scoring.errors import ModelUnavailable, ScoringError
from scoring.text_tokenizer import SEQ_LENGTH, TextTokenizer

__all__ = [
    "MODEL_NAME",
    "MODEL_PARTS",
    "CxrFoundation",
    "ImageEmbedding",  # re-exported: it lived here first
    "missing_parts",
]

MODEL_NAME = "google/cxr-foundation"
MODEL_PARTS = ("elixr-c-v2-pooled", "pax-elixr-b-text")
VOCAB_FILENAME = "vocab.txt"

N_TOKENS = 32  # Q-Former query tokens
CONTRASTIVE_DIM = 128
GENERAL_DIM = 768
FEATURE_SHAPE = (8, 8, 1376)  # ELIXR-C pooled feature map

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CACHE_LIMIT = 1024  # prompts are few; the bound only stops free-text queries growing it


def missing_parts(model_dir: Path, vocab_path: Path | None = None) -> list[str]:
    """List what is missing for CXR Foundation to load, in words (empty list = complete).

    Parameters
    ----------
    model_dir : Path
        Folder holding ``elixr-c-v2-pooled/`` and ``pax-elixr-b-text/``.
    vocab_path : Path, optional
        BERT ``vocab.txt``; defaults to ``model_dir / "vocab.txt"``.

    Returns
    -------
    list of str
        E.g. ``["model folder /models/cxr does not exist"]`` or
        ``["SavedModel elixr-c-v2-pooled (no saved_model.pb)", "vocabulary vocab.txt"]``.
    """
    model_dir = Path(model_dir)
    vocab = Path(vocab_path) if vocab_path is not None else model_dir / VOCAB_FILENAME
    missing: list[str] = []
    if not model_dir.is_dir():
        missing.append(f"model folder {model_dir} does not exist")
    else:
        for part in MODEL_PARTS:
            if not (model_dir / part / "saved_model.pb").is_file():
                missing.append(f"SavedModel {part} (no {part}/saved_model.pb in {model_dir})")
    if not vocab.is_file():
        missing.append(f"tokeniser vocabulary {vocab}")
    return missing


class CxrFoundation:
    """The two CXR Foundation SavedModels plus the tokeniser; build with :meth:`load`."""

    name = CXR_FOUNDATION  # recorded with every embedding, score row and trained head

    def __init__(self, tf: Any, loaded: tuple[Any, Any], tokenizer: TextTokenizer) -> None:
        self._tf = tf
        # Keep the loaded objects alive: their signatures hold only weak references to them.
        self._loaded = loaded
        self._elixr_c = loaded[0].signatures["serving_default"]
        self._qformer = loaded[1].signatures["serving_default"]
        self._tokenizer = tokenizer
        self._text_cache: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, model_dir: Path, vocab_path: Path | None = None, *, threads: int | None = None) -> CxrFoundation:
        """Load both SavedModels and the tokeniser from a local folder.

        Parameters
        ----------
        model_dir : Path
            Folder with ``elixr-c-v2-pooled/`` and ``pax-elixr-b-text/`` (as downloaded by
            ``snapshot_download("google/cxr-foundation", ...)``).
        vocab_path : Path, optional
            BERT-uncased ``vocab.txt``; defaults to ``model_dir / "vocab.txt"``.
        threads : int, optional
            CPU threads TensorFlow may use in this process (its intra- and inter-op pools);
            None: TensorFlow's default, every core. Takes effect only before TensorFlow's
            first operation in the process.

        Raises
        ------
        ModelUnavailable
            If a part is missing, tensorflow/transformers is not installed, or a
            SavedModel cannot be loaded.
        """
        model_dir = Path(model_dir)
        missing = missing_parts(model_dir, vocab_path)
        if missing:
            raise ModelUnavailable("CXR Foundation is incomplete, missing: " + "; ".join(missing))
        tf = _import_tensorflow()
        if threads is not None:
            _limit_threads(tf, threads)
        tokenizer = TextTokenizer(Path(vocab_path) if vocab_path else model_dir / VOCAB_FILENAME)
        loaded = tuple(_load_saved_model(tf, model_dir / part) for part in MODEL_PARTS)
        return cls(tf, loaded, tokenizer)

    def embed_image(self, png: bytes) -> ImageEmbedding:
        """Embed one image (a PNG from ``dicom.pixels.to_model_png``).

        Raises
        ------
        ScoringError
            If the bytes are not a PNG or a model call fails or returns unexpected shapes.
        """
        if not png.startswith(_PNG_SIGNATURE):
            raise ScoringError("image input is not a PNG")
        tf = self._tf
        example = tf.constant([_png_example(tf, png)])  # N = 1: the real models need batch 1
        features = self._call("elixr-c", self._elixr_c, input_example=example)["feature_maps_0"]
        _expect_shape("feature_maps_0", features, (1, *FEATURE_SHAPE))
        zeros_ids = tf.zeros([1, 1, SEQ_LENGTH], tf.int32)
        zeros_pad = tf.zeros([1, 1, SEQ_LENGTH], tf.float32)
        out = self._call("q-former", self._qformer, image_feature=features, ids=zeros_ids, paddings=zeros_pad)
        _expect_shape("all_contrastive_img_emb", out["all_contrastive_img_emb"], (1, N_TOKENS, CONTRASTIVE_DIM))
        _expect_shape("img_emb", out["img_emb"], (1, N_TOKENS, GENERAL_DIM))
        return ImageEmbedding(
            contrastive=out["all_contrastive_img_emb"].numpy()[0].astype(np.float32),
            general=out["img_emb"].numpy()[0].astype(np.float32),
        )

    def embed_text(self, text: str) -> np.ndarray:
        """Embed one text (``contrastive_txt_emb``, float32 (128,), read-only); cached per text.

        Raises
        ------
        ScoringError
            If the Q-Former call fails or returns an unexpected shape.
        """
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        tf = self._tf
        tokens = self._tokenizer(text)
        out = self._call(
            "q-former",
            self._qformer,
            image_feature=tf.zeros([1, *FEATURE_SHAPE], tf.float32),
            ids=tf.constant(tokens.ids),
            paddings=tf.constant(tokens.paddings),
        )
        _expect_shape("contrastive_txt_emb", out["contrastive_txt_emb"], (1, CONTRASTIVE_DIM))
        embedding = out["contrastive_txt_emb"].numpy()[0].astype(np.float32)
        embedding.flags.writeable = False  # shared through the cache
        if len(self._text_cache) < _TEXT_CACHE_LIMIT:
            self._text_cache[text] = embedding
        return embedding

    def _call(self, name: str, signature: Any, **inputs: Any) -> dict[str, Any]:
        """Call a signature, turning TensorFlow's errors into ScoringError."""
        try:
            return signature(**inputs)
        except (self._tf.errors.OpError, TypeError, ValueError) as exc:
            raise ScoringError(f"{name} call failed: {type(exc).__name__}") from exc


def _import_tensorflow() -> Any:
    """Import tensorflow (and tensorflow_text's custom ops when installed)."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ModelUnavailable("tensorflow is not installed (pip install 'radtriage[ml]')") from exc
    try:
        import tensorflow_text  # noqa: F401  registers custom ops some exports need
    except ImportError:
        pass  # the two ELIXR SavedModels load without it
    return tf


def _limit_threads(tf: Any, threads: int) -> None:
    """At most ``threads`` cores for TensorFlow in this process (before its first operation)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran here (a test, a benchmark): its pools are fixed
        log.info("TensorFlow is already initialised; its thread pools stay as they are")


def _load_saved_model(tf: Any, path: Path) -> Any:
    """Load one SavedModel and check it has the serving signature."""
    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise ModelUnavailable(f"could not load SavedModel {path.name}: {type(exc).__name__}") from exc
    if "serving_default" not in loaded.signatures:
        raise ModelUnavailable(f"SavedModel {path.name} has no serving_default signature")
    return loaded


def _png_example(tf: Any, png: bytes) -> bytes:
    """Serialized tf.train.Example with the PNG under the keys Google's serving code uses."""
    example = tf.train.Example()
    feature = example.features.feature
    feature["image/encoded"].bytes_list.value.append(png)
    feature["image/format"].bytes_list.value.append(b"png")
    return example.SerializeToString()


def _expect_shape(name: str, tensor: Any, shape: tuple[int, ...]) -> None:
    """Refuse a model output of the wrong shape rather than mis-scoring silently."""
    if tuple(tensor.shape) != shape:
        raise ScoringError(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")

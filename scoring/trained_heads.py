"""Trained finding heads: a small file per finding that turns a pooled embedding into a probability.

A head is a logistic regression or the reference small MLP (Dense → ReLU → BatchNorm, with
the batch norm folded into the next layer at export), stored as JSON — weights, bias,
feature standardisation, the operating threshold and how it was trained — so it is
portable, diffable and loads without pickle or torch. Layout on disk::

    <heads_dir>/<embedder>/<finding>.json        e.g. heads/cxr-foundation/pneumothorax.json

Training lives in ``scoring.probe``; this module only stores and applies heads (numpy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scoring.embedding import ImageEmbedding
from scoring.errors import ScoringError

__all__ = ["FORMAT", "Layer", "TrainedHead", "head_path", "load_heads"]

FORMAT = 1
ARCHITECTURES = ("logistic", "mlp")
_ACTIVATIONS = ("relu", "none")


@dataclass(frozen=True, slots=True, eq=False)
class Layer:
    """One affine layer ``x @ weight + bias``, then ``activation`` (relu or none)."""

    weight: np.ndarray  # (inputs, outputs)
    bias: np.ndarray  # (outputs,)
    activation: str = "none"

    def __post_init__(self) -> None:
        weight = np.asarray(self.weight, dtype=np.float64)
        bias = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if weight.ndim != 2 or bias.shape != (weight.shape[1],):
            raise ValueError(f"layer weight {weight.shape} and bias {bias.shape} do not fit")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ValueError("layer holds non-finite numbers")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {self.activation!r}")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)


@dataclass(frozen=True, slots=True, eq=False)
class TrainedHead:
    """A trained probe for one finding on one embedder's pooled contrastive embedding.

    Attributes
    ----------
    finding : str
        Policy finding name, e.g. ``"pneumothorax"``.
    embedder : str
        Embedder whose space it was trained in (``ImageEmbedding.model``).
    architecture : str
        ``"logistic"`` or ``"mlp"``.
    mean, scale : numpy.ndarray
        Feature standardisation learnt on the training set: ``(x - mean) / scale``.
    layers : tuple of Layer
        Ending in one output unit; a sigmoid turns it into a probability.
    operating_threshold : float
        Probability at or above which the finding counts as present (chosen on
        out-of-fold predictions for a target sensitivity; see ``metadata``).
    metadata : dict
        How it was trained: counts, cross-validated AUC, target sensitivity, date, version.
    """

    finding: str
    embedder: str
    architecture: str
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[Layer, ...]
    operating_threshold: float
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.finding.isidentifier() or self.finding != self.finding.lower():
            raise ValueError(f"finding must be a lower-case identifier, got {self.finding!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        scale = np.asarray(self.scale, dtype=np.float64).reshape(-1)
        if not self.layers or mean.shape != scale.shape or mean.shape[0] != self.layers[0].weight.shape[0]:
            raise ValueError("standardisation and first layer disagree on the input size")
        if not (np.isfinite(mean).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("standardisation must be finite with a positive scale")
        for before, after in zip(self.layers, self.layers[1:]):
            if before.weight.shape[1] != after.weight.shape[0]:
                raise ValueError("consecutive layers do not fit together")
        if self.layers[-1].weight.shape[1] != 1 or self.layers[-1].activation != "none":
            raise ValueError("the last layer must have one linear output")
        t = float(self.operating_threshold)
        if not (math.isfinite(t) and 0.0 <= t <= 1.0):
            raise ValueError(f"operating threshold must be a probability, got {self.operating_threshold!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "operating_threshold", t)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for pooled features, (n, d) → (n,) or (d,) → ().

        Raises
        ------
        ScoringError
            If the features do not have the head's input size.
        """
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        x = x.reshape(1, -1) if single else x
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ScoringError(f"head {self.finding} expects {self.input_dim} features, got {x.shape[-1]}")
        x = (x - self.mean) / self.scale
        for layer in self.layers:
            x = x @ layer.weight + layer.bias
            if layer.activation == "relu":
                x = np.maximum(x, 0.0)
        p = _sigmoid(x[:, 0])
        return p[0] if single else p

    def predict(self, embedding: ImageEmbedding) -> float:
        """Probability of the finding for one image embedding.

        Raises
        ------
        ScoringError
            If the embedding comes from another embedder than the head was trained on.
        """
        if embedding.model != self.embedder:
            raise ScoringError(f"head {self.finding} was trained on {self.embedder}, not {embedding.model}")
        return float(self.predict_features(embedding.pooled))

    def to_json(self) -> dict[str, Any]:
        """The head as a JSON-ready dict (the on-disk format)."""
        return {
            "format": FORMAT,
            "finding": self.finding,
            "embedder": self.embedder,
            "input": "pooled_contrastive",
            "architecture": self.architecture,
            "operating_threshold": self.operating_threshold,
            "standardize": {"mean": self.mean.tolist(), "scale": self.scale.tolist()},
            "layers": [
                {"weight": layer.weight.tolist(), "bias": layer.bias.tolist(), "activation": layer.activation}
                for layer in self.layers
            ],
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainedHead":
        """Inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            If a key is missing or a value is invalid (KeyError/TypeError are folded in).
        """
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"unknown head format {data['format']!r} (expected {FORMAT})")
            if data.get("input", "pooled_contrastive") != "pooled_contrastive":
                raise ValueError(f"unknown head input {data['input']!r}")
            return cls(
                finding=str(data["finding"]),
                embedder=str(data["embedder"]),
                architecture=str(data["architecture"]),
                mean=np.asarray(data["standardize"]["mean"], dtype=np.float64),
                scale=np.asarray(data["standardize"]["scale"], dtype=np.float64),
                layers=tuple(Layer(l["weight"], l["bias"], l.get("activation", "none")) for l in data["layers"]),
                operating_threshold=float(data["operating_threshold"]),
                metadata=dict(data.get("metadata", {})),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed head ({type(exc).__name__}: {exc})") from exc

    def save(self, heads_dir: Path) -> Path:
        """Write to ``<heads_dir>/<embedder>/<finding>.json`` atomically; returns the path."""
        path = head_path(heads_dir, self.embedder, self.finding)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        tmp.replace(path)  # a worker never reads a half-written head
        return path

    @classmethod
    def load(cls, path: Path) -> "TrainedHead":
        """Read one head file.

        Raises
        ------
        ScoringError
            If the file cannot be read or is not a valid head; the message names the file.
        """
        path = Path(path)
        try:
            head = cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise ScoringError(f"cannot read trained head {path} ({type(exc).__name__})") from exc
        except ValueError as exc:  # JSONDecodeError is a ValueError
            raise ScoringError(f"invalid trained head {path}: {exc}") from exc
        if head.finding != path.stem or head.embedder != path.parent.name:
            raise ScoringError(f"trained head {path} is for {head.embedder}/{head.finding}, not its file name")
        return head


def head_path(heads_dir: Path, embedder: str, finding: str) -> Path:
    """Where the head for ``finding`` on ``embedder`` lives."""
    return Path(heads_dir) / embedder / f"{finding}.json"


def load_heads(heads_dir: Path | None, embedder: str) -> dict[str, TrainedHead]:
    """Every trained head for ``embedder`` under ``heads_dir`` (none if the folder is absent).

    Raises
    ------
    ScoringError
        If a head file is unreadable or invalid: a broken head must be noticed, not
        silently replaced by the zero-shot one.
    """
    if heads_dir is None:
        return {}
    folder = Path(heads_dir) / embedder
    if not folder.is_dir():
        return {}
    return {path.stem: TrainedHead.load(path) for path in sorted(folder.glob("*.json"))}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    out = np.empty_like(x, dtype=np.float64)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out

"""Training a finding head on labelled embeddings: logistic regression or the reference small MLP.

Input is the pooled contrastive embedding (``ImageEmbedding.pooled``), as in Google's
data-efficient classifier (notebook ``train_data_efficient_classifier`` of
Google-Health/cxr-foundation). The operating threshold is chosen on
out-of-fold predictions of a stratified k-fold cross-validation (the highest threshold
that still reaches the target sensitivity), so it is not flattered by the training fit;
the head itself is then fitted on all the data.

* ``logistic``: L2-regularised logistic regression on standardised features, fitted
  exactly by Newton's method (numpy only; objective as scikit-learn's with ``C``).
* ``mlp``: hidden layers [512, 256] of Dense → ReLU → BatchNorm (the reference head),
  sigmoid output, binary cross-entropy; needs torch. The reference trains with LARS;
  we use AdamW with cosine decay, which needs no extra package. Batch norm is folded into
  the next layer at export, so applying the head needs numpy only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from scoring.errors import ModelUnavailable
from scoring.evaluation import roc_auc
from scoring.trained_heads import ARCHITECTURES, Layer, TrainedHead

__all__ = ["choose_threshold", "fit_logistic", "fit_mlp", "stratified_folds", "train_head"]

_MIN_PER_CLASS = 2


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray, target_sensitivity: float) -> float:
    """The highest threshold at which ``probability >= threshold`` reaches the target sensitivity.

    Raises
    ------
    ValueError
        If there are no positives or the target is not in (0, 1].
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target_sensitivity!r}")
    positives = np.sort(np.asarray(probabilities, dtype=np.float64)[np.asarray(labels) == 1])[::-1]
    if positives.size == 0:
        raise ValueError("no positive examples")
    # Calling the k highest-scoring positives positive needs threshold = the k-th highest.
    k = math.ceil(target_sensitivity * positives.size - 1e-9)
    return float(positives[max(k, 1) - 1])


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Index arrays of ``folds`` test folds, each class spread evenly (shuffled by ``seed``)."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(labels.size, dtype=np.int64)
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        assignment[idx] = np.arange(idx.size) % folds
    return [np.flatnonzero(assignment == f) for f in range(folds)]


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)  # a constant feature stays 0 after centring


def fit_logistic(x: np.ndarray, y: np.ndarray, *, c: float = 1.0, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray, Layer]:
    """Fit ``sum logloss + ||w||² / (2c)`` (bias unpenalised) by Newton's method.

    Returns
    -------
    mean, scale, layer
        Standardisation and the single output layer.
    """
    mean, scale = _standardise(x)
    z = np.hstack([np.ones((x.shape[0], 1)), (x - mean) / scale])
    penalty = np.full(z.shape[1], 1.0 / c)
    penalty[0] = 0.0
    w = np.zeros(z.shape[1])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -35, 35)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-10 * np.eye(z.shape[1])
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return mean, scale, Layer(w[1:].reshape(-1, 1), w[:1], "none")


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: Sequence[int] = (512, 256),
    epochs: int = 100,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[Layer, ...]]:
    """Train the reference MLP head with torch and export it as plain affine layers.

    Raises
    ------
    ModelUnavailable
        If torch is not installed.
    """
    try:
        import torch
    except ImportError as exc:
        raise ModelUnavailable("the MLP head needs torch (pip install 'radtriage[ml]')") from exc
    mean, scale = _standardise(x)
    torch.manual_seed(seed)
    blocks: list[Any] = []
    width = x.shape[1]
    for size in hidden:
        linear = torch.nn.Linear(width, size)
        torch.nn.init.kaiming_uniform_(linear.weight, nonlinearity="relu")  # HeUniform, as the reference
        blocks += [linear, torch.nn.ReLU(), torch.nn.BatchNorm1d(size)]
        width = size
    blocks.append(torch.nn.Linear(width, 1))
    net = torch.nn.Sequential(*blocks)
    features = torch.as_tensor((x - mean) / scale, dtype=torch.float32)
    targets = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1)
    steps_per_epoch = max(1, math.ceil(len(y) / batch_size))
    optimiser = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            if idx.numel() < 2:  # batch norm needs two samples
                continue
            optimiser.zero_grad()
            loss_fn(net(features[idx]), targets[idx]).backward()
            optimiser.step()
            schedule.step()
    net.eval()
    return mean, scale, _export(blocks)


def _export(blocks: list[Any]) -> tuple[Layer, ...]:
    """Affine layers with each eval-mode batch norm folded into the following linear layer."""
    layers: list[Layer] = []
    carry_scale: np.ndarray | None = None
    carry_shift: np.ndarray | None = None
    for block in blocks:
        name = type(block).__name__
        if name == "Linear":
            weight = block.weight.detach().numpy().T.astype(np.float64)
            bias = block.bias.detach().numpy().astype(np.float64)
            if carry_scale is not None:
                bias = carry_shift @ weight + bias
                weight = carry_scale[:, None] * weight
                carry_scale = carry_shift = None
            layers.append(Layer(weight, bias, "none"))
        elif name == "ReLU":
            layers[-1] = Layer(layers[-1].weight, layers[-1].bias, "relu")
        elif name == "BatchNorm1d":
            std = np.sqrt(block.running_var.detach().numpy() + block.eps)
            carry_scale = block.weight.detach().numpy() / std
            carry_shift = block.bias.detach().numpy() - block.running_mean.detach().numpy() * carry_scale
    return tuple(layers)


def _fit(architecture: str, x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[Layer, ...]]:
    if architecture == "logistic":
        mean, scale, layer = fit_logistic(x, y)
        return mean, scale, (layer,)
    return fit_mlp(x, y, seed=seed)


def train_head(
    finding: str,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    embedder: str,
    architecture: str = "logistic",
    target_sensitivity: float = 0.9,
    folds: int = 5,
    seed: int = 0,
    progress: Callable[[], None] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> TrainedHead:
    """Cross-validate, choose the operating threshold, then fit one head on all the data.

    Parameters
    ----------
    finding : str
        Policy finding name.
    features : numpy.ndarray
        Pooled embeddings, (n, d).
    labels : numpy.ndarray
        0/1 per row (rows with unknown labels must already be dropped).
    embedder : str
        Name of the embedder the features come from.
    architecture : {"logistic", "mlp"}
    target_sensitivity : float
        Sensitivity the operating threshold is chosen for (triage favours sensitivity).
    folds : int
        Cross-validation folds (reduced when a class has fewer examples).
    progress : callable, optional
        Called once per fitted model (``folds + 1`` calls), e.g. to advance a progress bar.

    Raises
    ------
    ValueError
        Too few examples of a class, bad shapes or an unknown architecture.
    ModelUnavailable
        ``mlp`` without torch.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != y.size or not np.isin(y, (0, 1)).all():
        raise ValueError("features must be (n, d) with one 0/1 label per row")
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if min(n_pos, n_neg) < _MIN_PER_CLASS:
        raise ValueError(f"{finding}: need at least {_MIN_PER_CLASS} positives and negatives, got {n_pos}/{n_neg}")
    folds = max(2, min(folds, n_pos, n_neg))
    out_of_fold = np.empty(y.size)
    for test in stratified_folds(y, folds, seed):
        train = np.setdiff1d(np.arange(y.size), test)
        mean, scale, layers = _fit(architecture, x[train], y[train], seed)
        probe = TrainedHead(finding, embedder, architecture, mean, scale, layers, 0.5)
        out_of_fold[test] = probe.predict_features(x[test])
        if progress:
            progress()
    threshold = choose_threshold(y, out_of_fold, target_sensitivity)
    called = out_of_fold >= threshold
    mean, scale, layers = _fit(architecture, x, y, seed)
    if progress:
        progress()
    metadata = {
        "n_positive": n_pos,
        "n_negative": n_neg,
        "cv_folds": folds,
        "cv_auc": roc_auc(y, out_of_fold),
        "target_sensitivity": target_sensitivity,
        "cv_sensitivity": float(called[y == 1].mean()),
        "cv_specificity": float((~called[y == 0]).mean()),
        "seed": seed,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra_metadata or {}),
    }
    return TrainedHead(finding, embedder, architecture, mean, scale, layers, threshold, metadata)

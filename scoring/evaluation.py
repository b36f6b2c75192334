"""Evaluation of finding heads on labelled images: ROC AUC with a bootstrap 95 % CI, and
sensitivity/specificity at the operating threshold the policy would use.

Pure numpy (tie-aware Mann–Whitney AUC), so results do not depend on a metrics library;
matplotlib is imported only to draw ROC curves (``pip install 'radtriage[eval]'``).

A zero-shot rule the policy marks unvalidated is validated for a site by a *validation
record* (:func:`write_validation`, written by ``radtriage probe evaluate --record-validation``):
``<heads_dir>/<embedder>/validations/<finding>.json``, bound to the prompt pair and threshold
it was evaluated with, so editing either in the policy makes the rule unvalidated again.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "FindingEvaluation",
    "bootstrap_auc_ci",
    "evaluate_finding",
    "roc_auc",
    "roc_curve",
    "save_roc_png",
    "sensitivity_specificity",
    "validated_findings",
    "validation_path",
    "write_report",
    "write_validation",
]


def _checked(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def roc_auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve (ties count one half), i.e. P(score⁺ > score⁻).

    Raises
    ------
    ValueError
        If only one class is present or inputs are malformed.
    """
    y, s = _checked(labels, scores)
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    ranks = _midranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates for every distinct threshold, from (0, 0) to (1, 1).

    Returns
    -------
    fpr, tpr, thresholds : numpy.ndarray
        ``thresholds[0]`` is +inf; a score ``>= thresholds[i]`` counts as positive.
    """
    y, s = _checked(labels, scores)
    n_pos, n_neg = y.sum(), y.size - y.sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs at least one positive and one negative")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    return (
        np.r_[0.0, fps / n_neg],
        np.r_[0.0, tps / n_pos],
        np.r_[np.inf, s_sorted[last_of_run]],
    )


def sensitivity_specificity(labels: Sequence[float], scores: Sequence[float], threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity when ``score >= threshold`` means positive (NaN for an absent class)."""
    y, s = _checked(labels, scores)
    called = s >= threshold
    pos, neg = y == 1, y == 0
    sens = float(called[pos].mean()) if pos.any() else math.nan
    spec = float((~called[neg]).mean()) if neg.any() else math.nan
    return sens, spec


def bootstrap_auc_ci(
    labels: Sequence[float], scores: Sequence[float], *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the AUC (resampling images with replacement).

    Resamples that lack a class are drawn again (they have no AUC). Fixed ``seed`` →
    reproducible interval.

    Raises
    ------
    ValueError
        If only one class is present or ``n_boot`` < 1.
    """
    y, s = _checked(labels, scores)
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    roc_auc(y, s)  # refuses a single class up front
    rng = np.random.default_rng(seed)
    aucs: list[float] = []
    while len(aucs) < n_boot:
        idx = rng.integers(0, y.size, y.size)
        yb = y[idx]
        if 0 < yb.sum() < yb.size:
            aucs.append(roc_auc(yb, s[idx]))
    low, high = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True, slots=True)
class FindingEvaluation:
    """How one finding's head did on a labelled set."""

    finding: str
    head: str  # "trained" or "zero-shot"
    n_positive: int
    n_negative: int
    auc: float
    auc_ci_low: float
    auc_ci_high: float
    threshold: float
    sensitivity: float
    specificity: float
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]

    def summary(self) -> dict[str, object]:
        """Everything but the curve (for tables, JSON and CSV)."""
        row = asdict(self)
        row.pop("fpr"), row.pop("tpr")
        return row


def evaluate_finding(
    finding: str,
    labels: Sequence[float],
    scores: Sequence[float],
    *,
    threshold: float,
    head: str,
    n_boot: int = 1000,
    seed: int = 0,
) -> FindingEvaluation:
    """AUC with bootstrap CI, sensitivity/specificity at ``threshold`` and the ROC curve.

    Raises
    ------
    ValueError
        If only one class is present or inputs are malformed.
    """
    y, s = _checked(labels, scores)
    auc = roc_auc(y, s)
    low, high = bootstrap_auc_ci(y, s, n_boot=n_boot, seed=seed)
    sens, spec = sensitivity_specificity(y, s, threshold)
    fpr, tpr, _ = roc_curve(y, s)
    return FindingEvaluation(
        finding, head, int(y.sum()), int(y.size - y.sum()), auc, low, high, float(threshold), sens, spec,
        tuple(float(v) for v in fpr), tuple(float(v) for v in tpr),
    )


def new_figure(width: float, height: float):
    """A matplotlib figure drawn without a display (servers have none).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'radtriage[eval]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def save_roc_png(evaluation: FindingEvaluation, path: Path) -> Path:
    """Draw the ROC curve with its AUC, CI and operating point to a PNG.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'radtriage[eval]'``).
    """
    e = evaluation
    fig = new_figure(4.5, 4.5)
    ax = fig.add_subplot()
    ax.plot(e.fpr, e.tpr, lw=2, label=f"AUC {e.auc:.3f} (95% CI {e.auc_ci_low:.3f}–{e.auc_ci_high:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey")
    if not (math.isnan(e.sensitivity) or math.isnan(e.specificity)):
        ax.plot([1 - e.specificity], [e.sensitivity], "o", color="C3",
                label=f"threshold {e.threshold:.3g}: sens {e.sensitivity:.2f}, spec {e.specificity:.2f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity",
           title=f"{e.finding} ({e.head}; {e.n_positive}+ / {e.n_negative}−)")
    ax.legend(loc="lower right", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def write_report(evaluations: Sequence[FindingEvaluation], out_dir: Path) -> tuple[Path, Path]:
    """Write ``evaluation.json`` (with curves) and ``evaluation.csv`` (summary) to ``out_dir``."""
    import csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "evaluation.json", out_dir / "evaluation.csv"
    json_path.write_text(json.dumps([asdict(e) for e in evaluations], indent=1), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        fields = list(FindingEvaluation.__dataclass_fields__)[:10]
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for e in evaluations:
            writer.writerow(e.summary())
    return json_path, csv_path


def validation_path(heads_dir: Path, embedder: str, finding: str) -> Path:
    """Where the validation record of one finding for one embedder lives."""
    return Path(heads_dir) / embedder / "validations" / f"{finding}.json"


def write_validation(
    evaluation: FindingEvaluation, *, embedder: str, prompt_positive: str, prompt_negative: str, heads_dir: Path
) -> Path:
    """Record that a zero-shot rule was evaluated on local labelled data (figures and what was evaluated)."""
    record = {
        **evaluation.summary(), "embedder": embedder, "prompt_positive": prompt_positive,
        "prompt_negative": prompt_negative, "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    path = validation_path(heads_dir, embedder, evaluation.finding)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return path


def validated_findings(heads_dir: Path | None, embedder: str, rules: Iterable[object]) -> frozenset[str]:
    """Names of the rules with a validation record for ``embedder`` that matches them exactly.

    ``rules`` are policy rules (``name``, ``prompt_positive``, ``prompt_negative``,
    ``threshold``). A record made with other prompts or another threshold does not count;
    an unreadable record counts as none (the rule stays capped, the safe side).
    """
    if heads_dir is None:
        return frozenset()
    names = set()
    for rule in rules:
        path = validation_path(heads_dir, embedder, rule.name)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        same = (record.get("embedder"), record.get("prompt_positive"), record.get("prompt_negative"),
                record.get("head")) == (embedder, rule.prompt_positive, rule.prompt_negative, "zero-shot")
        threshold = record.get("threshold")
        if same and isinstance(threshold, (int, float)) and math.isclose(threshold, rule.threshold, abs_tol=1e-9):
            names.add(rule.name)
    return frozenset(names)


def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks (vectorised)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]

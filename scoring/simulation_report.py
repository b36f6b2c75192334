"""Compare reading policies on the same simulated patients over seeded trials: waits and
turnarounds per group of studies with confidence intervals across trials, the share of the
list shown STAT, and a plot of the wait distributions (matplotlib, ``radtriage[eval]``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.priority import Priority
from common.reading_order import Waits
from scoring.simulation import NO_ESCALATION, Outcome, ReadingPolicy, run
from scoring.simulation_patients import Department, Patients, draw_patients

__all__ = ["GROUPS", "MEASURES", "STATISTICS", "Comparison", "Estimate", "PolicyResult", "compare",
           "save_wait_plot", "t_quantile"]

GROUPS = ("critical", "non-critical", "AI-positive", "AI-negative", "routine")  # routine: ROUTINE after the AI
MEASURES = ("wait", "turnaround")
STATISTICS = ("mean", "median", "p95", "max")


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """The mean over trials of one figure, with its confidence interval (Student's t)."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float], confidence: float) -> Estimate:
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        if x.size == 0:
            return cls(math.nan, math.nan, math.nan)
        mean = float(x.mean())
        if x.size < 2:
            return cls(mean, math.nan, math.nan)
        half = t_quantile(0.5 + confidence / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
        return cls(mean, mean - half, mean + half)

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy's figures; ``figures[(measure, group, statistic)]`` in minutes."""

    policy: ReadingPolicy
    figures: dict[tuple[str, str, str], Estimate]
    listed_stat: Estimate  # share of the listed studies shown STAT because they are STAT
    listed_stat_escalated: Estimate  # share shown STAT only because waiting escalated them
    opened_escalated: Estimate  # share of studies that waiting had escalated when first opened
    waits: dict[str, np.ndarray]  # every trial's waits per group, pooled (for the plot)


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    department: Department
    waits: Waits
    trials: int
    seed: int
    confidence: float
    results: tuple[PolicyResult, ...]
    studies_per_trial: float

    def result(self, policy: ReadingPolicy | str) -> PolicyResult:
        return next(r for r in self.results if r.policy is ReadingPolicy(policy))

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): parameters and every figure with its interval."""
        def minutes(w):
            return None if w is None else w.total_seconds() / 60

        d = dataclasses.asdict(self.department)
        d["ai_priority"] = str(self.department.ai_priority)
        return {
            "department": d,
            "escalation": {"routine_after_minutes": minutes(self.waits.routine),
                           "urgent_after_minutes": minutes(self.waits.urgent)},
            "trials": self.trials, "seed": self.seed, "confidence": self.confidence,
            "studies_per_trial": self.studies_per_trial, "utilisation": self.department.utilisation(),
            "policies": {
                str(r.policy): {
                    "minutes": {m: {g: {s: dataclasses.asdict(r.figures[m, g, s]) for s in STATISTICS}
                                    for g in GROUPS} for m in MEASURES},
                    "listed_stat_share": dataclasses.asdict(r.listed_stat),
                    "listed_stat_escalated_share": dataclasses.asdict(r.listed_stat_escalated),
                    "opened_escalated_share": dataclasses.asdict(r.opened_escalated),
                } for r in self.results
            },
        }


def compare(department: Department, *, waits: Waits = NO_ESCALATION, trials: int = 10, seed: int = 0,
            policies: Sequence[ReadingPolicy | str] = tuple(ReadingPolicy), confidence: float = 0.95) -> Comparison:
    """Run every policy on the same patients in each of ``trials`` trials (trial k draws its
    patients from the seed sequence ``[seed, k]``).

    Raises
    ------
    ValueError
        Fewer than two trials, or a confidence outside (0, 1).
    """
    if trials < 2:
        raise ValueError("at least two trials are needed for a confidence interval")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    policies = [ReadingPolicy(p) for p in policies]
    per_trial: dict[ReadingPolicy, list[dict]] = {p: [] for p in policies}
    counts = []
    for k in range(trials):
        patients = draw_patients(department, np.random.default_rng([seed, k]))
        counted = patients.arrival >= department.warmup_minutes
        counts.append(int(counted.sum()))
        for policy in policies:
            outcome = run(patients, department, policy, waits)
            per_trial[policy].append(_trial_figures(patients, outcome, counted))
    results = tuple(_combine(p, per_trial[p], confidence) for p in policies)
    return Comparison(department, waits, trials, seed, confidence, results, float(np.mean(counts)))


def _groups(patients: Patients, counted: np.ndarray) -> dict[str, np.ndarray]:
    masks = {
        "critical": patients.critical, "non-critical": ~patients.critical,
        "AI-positive": patients.ai_positive, "AI-negative": ~patients.ai_positive,
        "routine": patients.priority_rank == Priority.ROUTINE.rank,
    }
    return {g: m & counted for g, m in masks.items()}


def _trial_figures(patients: Patients, outcome: Outcome, counted: np.ndarray) -> dict:
    figures: dict = {}
    waits: dict = {}
    for group, mask in _groups(patients, counted).items():
        for measure, values in (("wait", outcome.wait[mask]), ("turnaround", outcome.turnaround[mask])):
            for statistic in STATISTICS:
                figures[measure, group, statistic] = _statistic(values, statistic)
        waits[group] = outcome.wait[mask]
    listed = max(outcome.listed, 1)
    return {"figures": figures, "waits": waits, "stat": outcome.listed_stat / listed,
            "stat_escalated": outcome.listed_stat_escalated / listed,
            "opened_escalated": float(outcome.escalated[counted].mean()) if counted.any() else math.nan}


def _statistic(values: np.ndarray, statistic: str) -> float:
    if values.size == 0:
        return math.nan
    if statistic == "mean":
        return float(values.mean())
    if statistic == "max":
        return float(values.max())
    return float(np.percentile(values, 50 if statistic == "median" else 95))


def _combine(policy: ReadingPolicy, trials: list[dict], confidence: float) -> PolicyResult:
    figures = {key: Estimate.of([t["figures"][key] for t in trials], confidence) for key in trials[0]["figures"]}
    return PolicyResult(
        policy, figures,
        Estimate.of([t["stat"] for t in trials], confidence),
        Estimate.of([t["stat_escalated"] for t in trials], confidence),
        Estimate.of([t["opened_escalated"] for t in trials], confidence),
        {g: np.concatenate([t["waits"][g] for t in trials]) for g in GROUPS},
    )


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` (integer) degrees of freedom, by bisection on
    its exact distribution function (Abramowitz & Stegun 26.7.3–4)."""
    if not 0.5 <= p < 1 or df < 1:
        raise ValueError("t_quantile needs 0.5 ≤ p < 1 and df ≥ 1")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd: A = 2/π (θ + sinθ (cosθ + 2/3 cos³θ + …))
        term, total = c, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c * c * (2 * k) / (2 * k + 1)
        inside = 2 / math.pi * (theta + s * total) if df > 1 else 2 * theta / math.pi
    else:  # even: A = sinθ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + …)
        term, total = 1.0, 0.0
        for k in range(1, df // 2 + 1):
            total += term
            term *= c * c * (2 * k - 1) / (2 * k)
        inside = s * total
    return 0.5 + inside / 2  # A is P(|T| < t)


def save_wait_plot(comparison: Comparison, path: Path) -> Path:
    """Draw the distribution of waits (empirical CDF) per policy, one panel per group.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install 'radtriage[eval]'``).
    """
    groups = ("critical", "routine", "AI-positive", "AI-negative")
    from scoring.evaluation import new_figure

    fig = new_figure(10, 7)
    axes = fig.subplots(2, 2)
    for ax, group in zip(axes.flat, groups):
        for r in comparison.results:
            w = np.sort(r.waits[group])
            if w.size:
                ax.step(np.maximum(w, 1e-2), np.arange(1, w.size + 1) / w.size, where="post", label=str(r.policy))
        ax.set(xscale="log", xlabel="wait (minutes, log scale; no wait drawn at 0.01)", ylabel="share read by then", title=group, ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    d = comparison.department
    fig.suptitle(f"{d.arrivals_per_hour:g}/h, {d.readers} readers, {d.reading_minutes:g} min/read; "
                 f"{comparison.trials} trials", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path

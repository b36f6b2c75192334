"""The reading room's parameters (:class:`Department`) and the patients of one simulated trial
(:func:`draw_patients`): arrivals, critical findings, the scorer's call and score, reading times."""

from __future__ import annotations

import dataclasses
from statistics import NormalDist

import numpy as np

from common.priority import Priority

__all__ = ["Department", "Patients", "WorkingHours", "draw_patients"]

_DAY = 1440.0
_N = NormalDist()
_TINY = 1e-12  # keeps normal quantiles finite for a perfect scorer (sensitivity 1, FPR 0)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkingHours:
    """From ``start`` to ``end`` o'clock every day."""

    start: float = 8.0
    end: float = 18.0

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= 24:
            raise ValueError(f"working hours must satisfy 0 ≤ start < end ≤ 24, got {self.start}–{self.end}")

    @property
    def minutes(self) -> float:
        return (self.end - self.start) * 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Department:
    """A reading room. Defaults: a chest X-ray department of ~220 studies in a 10-hour day.

    Studies arrive during ``arrival_hours`` (None: around the clock) at ``arrivals_per_hour``;
    readers take new studies during ``hours`` (None: around the clock) and finish a read under
    way after them. By default the list closes at 18:00 and the readers stay until 19:00.
    ``ordered_mix`` is the share of studies ordered STAT, URGENT and ROUTINE (independent of the
    finding). A study the scorer calls positive is raised to ``ai_priority`` (never lowered).
    """

    arrivals_per_hour: float = 22.0
    readers: int = 2
    reading_minutes: float = 4.0
    reading_distribution: str = "lognormal"  # or "exponential"
    reading_cv: float = 0.6  # coefficient of variation of a lognormal reading time
    critical_prevalence: float = 0.03
    sensitivity: float = 0.87
    false_positive_rate: float = 0.15
    ai_priority: Priority = Priority.STAT
    ordered_mix: tuple[float, float, float] = (0.05, 0.15, 0.80)
    hours: WorkingHours | None = WorkingHours(8.0, 19.0)
    arrival_hours: WorkingHours | None = WorkingHours(8.0, 18.0)
    preemptive: bool = False
    days: float = 10.0
    warmup_days: float = 0.0  # studies arriving earlier are simulated but not counted

    def __post_init__(self) -> None:
        checks = [
            (self.arrivals_per_hour > 0, "arrivals per hour must be positive"),
            (self.readers >= 1, "there must be at least one reader"),
            (self.reading_minutes > 0, "the mean reading time must be positive"),
            (self.reading_distribution in ("lognormal", "exponential"),
             f"reading distribution must be lognormal or exponential, got {self.reading_distribution!r}"),
            (self.reading_cv > 0, "the reading time's coefficient of variation must be positive"),
            (0 <= self.critical_prevalence <= 1, "critical prevalence must be within 0–1"),
            (0 <= self.sensitivity <= 1, "sensitivity must be within 0–1"),
            (0 <= self.false_positive_rate <= 1, "false-positive rate must be within 0–1"),
            (len(self.ordered_mix) == 3 and min(self.ordered_mix) >= 0 and abs(sum(self.ordered_mix) - 1) < 1e-6,
             f"the ordered mix (STAT, URGENT, ROUTINE) must be three shares summing to 1, got {self.ordered_mix}"),
            (self.days > 0 and 0 <= self.warmup_days < self.days, "days must be positive and the warm-up shorter"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        object.__setattr__(self, "ai_priority", Priority(self.ai_priority))

    @property
    def warmup_minutes(self) -> float:
        return self.warmup_days * _DAY

    def reading_at(self, minute: float) -> bool:
        """Whether readers take new studies at ``minute``."""
        if self.hours is None:
            return True
        of_day = minute % _DAY
        return self.hours.start * 60 <= of_day < self.hours.end * 60

    def next_shift_start(self, minute: float) -> float:
        """The first start of working hours at or after ``minute`` (infinity: no working hours)."""
        if self.hours is None:
            return float("inf")
        day, of_day = divmod(minute, _DAY)
        start = self.hours.start * 60
        return day * _DAY + start if of_day <= start else (day + 1) * _DAY + start

    def utilisation(self) -> float:
        """Offered load per reader while studies arrive (≥ 1: the list grows all day)."""
        return self.arrivals_per_hour * self.reading_minutes / 60 / self.readers


@dataclasses.dataclass(frozen=True, slots=True)
class Patients:
    """One trial's patients, sorted by arrival (minutes from the start of day 0)."""

    arrival: np.ndarray
    critical: np.ndarray  # bool: has a critical finding
    ordered_rank: np.ndarray  # rank of the priority the clinician ordered
    ai_positive: np.ndarray  # bool: the scorer raised the study
    score: np.ndarray  # urgency score 0–100 (50: the scorer's threshold)
    priority_rank: np.ndarray  # rank of max(ordered, AI): the study's class before any escalation
    reading: np.ndarray  # minutes a reader needs for it


def draw_patients(department: Department, rng: np.random.Generator) -> Patients:
    """Draw one trial's patients. Every draw happens whatever the parameters' values, in a fixed
    sequence, so one seed gives the same patients to every policy.

    The score follows the binormal model of a scorer: a latent value ~ N(0, 1) without a critical
    finding and ~ N(μ, 1) with one, the threshold set for the false-positive rate and μ for the
    sensitivity; it is reported as 100·Φ(latent − threshold).
    """
    d = department
    arrival = _arrivals(d, rng)
    n = arrival.size
    critical = rng.random(n) < d.critical_prevalence
    stat, urgent, _ = d.ordered_mix
    u = rng.random(n)
    ordered_rank = np.where(u < stat, Priority.STAT.rank, np.where(u < stat + urgent, Priority.URGENT.rank,
                                                                      Priority.ROUTINE.rank)).astype(np.int8)
    ai_positive = rng.random(n) < np.where(critical, d.sensitivity, d.false_positive_rate)
    score = _scores(d, critical, ai_positive, rng.random(n))
    priority_rank = np.where(ai_positive, np.maximum(ordered_rank, d.ai_priority.rank), ordered_rank).astype(np.int8)
    return Patients(arrival, critical, ordered_rank, ai_positive, score, priority_rank, _reading(d, rng, n))


def _arrivals(d: Department, rng: np.random.Generator) -> np.ndarray:
    """A Poisson process: a Poisson count over the open time, uniformly placed, then mapped to the clock."""
    hours = d.arrival_hours
    per_day = _DAY if hours is None else hours.minutes
    open_minutes = d.days * per_day
    n = rng.poisson(d.arrivals_per_hour * open_minutes / 60)
    open_time = np.sort(rng.uniform(0, open_minutes, n))
    if hours is None:
        return open_time
    day, within = np.divmod(open_time, per_day)
    return day * _DAY + hours.start * 60 + within


def _scores(d: Department, critical: np.ndarray, positive: np.ndarray, v: np.ndarray) -> np.ndarray:
    threshold = _N.inv_cdf(1 - min(max(d.false_positive_rate, _TINY), 1 - _TINY))
    shift = threshold - _N.inv_cdf(1 - min(max(d.sensitivity, _TINY), 1 - _TINY))  # μ
    centre = np.where(critical, shift, 0.0)
    below = np.array([_N.cdf(threshold - c) for c in (0.0, shift)])[critical.astype(int)]  # P(latent < threshold)
    # the latent value conditioned on the scorer's call: a quantile above or below the threshold
    p = np.where(positive, below + v * (1 - below), v * below)
    latent = centre + np.array([_N.inv_cdf(x) for x in np.clip(p, _TINY, 1 - _TINY)])
    # a quantile rounded onto the wrong side of the threshold is put back on its own side
    latent = np.where(positive, np.maximum(latent, threshold), np.minimum(latent, np.nextafter(threshold, -np.inf)))
    return 100.0 * np.array([_N.cdf(x) for x in latent - threshold])


def _reading(d: Department, rng: np.random.Generator, n: int) -> np.ndarray:
    if d.reading_distribution == "exponential":
        return rng.exponential(d.reading_minutes, n)
    z = rng.standard_normal(n)
    sigma2 = np.log1p(d.reading_cv ** 2)
    return np.exp(np.log(d.reading_minutes) - sigma2 / 2 + np.sqrt(sigma2) * z)

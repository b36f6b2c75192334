"""The reading-room simulation: deterministic per seed, FIFO in arrival order, the closed-form
mean waits of an M/M/1 queue with two priority classes, escalation capping routine waits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from common.reading_order import Waits
from radtriage.cli import main
from scoring.simulation import ReadingPolicy, run
from scoring.simulation_patients import Department, draw_patients
from scoring.simulation_report import compare, t_quantile
from tests.conftest import need

# One reader, exponential reading times (mean 1 min), Poisson arrivals around the clock, a
# perfect scorer raising critical studies to STAT and nothing else ordered above ROUTINE: an
# M/M/1 queue with two priority classes (1: critical, 2: the rest).
LAMBDA, CRITICAL_SHARE = 0.6, 0.3  # per minute; load ρ = 0.6, ρ1 = 0.18
MM1 = Department(arrivals_per_hour=60 * LAMBDA, readers=1, reading_minutes=1.0, reading_distribution="exponential",
                 critical_prevalence=CRITICAL_SHARE, sensitivity=1.0, false_positive_rate=0.0, ordered_mix=(0, 0, 1),
                 hours=None, arrival_hours=None, days=14, warmup_days=0.5)


def _closed_form(preemptive: bool) -> dict[tuple[str, str], float]:
    """Mean wait (until a reader first opens it) and turnaround per class, in minutes (μ = 1)."""
    rho, rho1 = LAMBDA, LAMBDA * CRITICAL_SHARE
    residual = LAMBDA * 2 / 2  # Σ λ_i E[S_i²] / 2 with E[S²] = 2 for a unit-mean exponential
    if not preemptive:  # Cobham: W_k = R / ((1 − σ_{k−1})(1 − σ_k)), turnaround adds E[S]
        w1, w2 = residual / (1 - rho1), residual / ((1 - rho1) * (1 - rho))
        return {("wait", "critical"): w1, ("wait", "non-critical"): w2,
                ("turnaround", "critical"): w1 + 1, ("turnaround", "non-critical"): w2 + 1}
    # pre-emptive resume (Kleinrock): T_k = E[S]/(1 − σ_{k−1}) + R_k / ((1 − σ_{k−1})(1 − σ_k));
    # class 1 never waits for class 2, so it waits as in an M/M/1 queue of its own
    return {("wait", "critical"): rho1 / (1 - rho1),
            ("turnaround", "critical"): 1 / (1 - rho1),
            ("turnaround", "non-critical"): 1 / (1 - rho1) + residual / ((1 - rho1) * (1 - rho))}


@pytest.mark.parametrize("preemptive", [False, True], ids=["non-preemptive (Cobham)", "preemptive-resume (Kleinrock)"])
def test_mm1_priority_queue_matches_the_closed_form_mean_waits(preemptive):
    # four figures checked at once: 99% intervals keep the chance of any miss near 5% (Bonferroni)
    comparison = compare(dataclasses.replace(MM1, preemptive=preemptive), trials=8, seed=3, policies=["triage"],
                         confidence=0.99)
    figures = comparison.result("triage").figures
    for (measure, group), expected in _closed_form(preemptive).items():
        estimate = figures[measure, group, "mean"]
        assert estimate.covers(expected), (measure, group, expected, estimate)
        assert estimate.high - estimate.low < 0.2 * expected  # an interval narrow enough to mean something


def test_the_same_seed_gives_the_same_figures_and_another_seed_other_ones():
    department = Department(days=2)
    waits = Waits(dt.timedelta(minutes=30), dt.timedelta(minutes=30))
    first = compare(department, waits=waits, trials=3, seed=7).to_dict()
    assert compare(department, waits=waits, trials=3, seed=7).to_dict() == first
    assert compare(department, waits=waits, trials=3, seed=8).to_dict() != first


def test_fifo_reads_in_order_of_arrival_whatever_the_priorities():
    department = Department(readers=3, days=2, preemptive=True, critical_prevalence=0.2)
    patients = draw_patients(department, np.random.default_rng(0))
    outcome = run(patients, department, ReadingPolicy.FIFO)
    assert np.all(np.diff(patients.arrival) >= 0)
    assert outcome.read_order.tolist() == list(range(patients.arrival.size))
    # ... while triage on the same patients does not
    assert run(patients, department, ReadingPolicy.TRIAGE).read_order.tolist() != list(range(patients.arrival.size))


def test_policies_see_the_same_patients_and_every_study_is_read_once_in_working_hours():
    department = Department(days=3)
    patients = draw_patients(department, np.random.default_rng(1))
    for policy in ReadingPolicy:
        outcome = run(patients, department, policy, Waits(dt.timedelta(minutes=20), dt.timedelta(minutes=20)))
        assert sorted(outcome.read_order.tolist()) == list(range(patients.arrival.size))
        assert np.all(outcome.wait >= 0) and np.all(outcome.turnaround >= patients.reading - 1e-9)
        minute_of_day = outcome.start % 1440
        assert np.all((minute_of_day >= 8 * 60) & (minute_of_day < 19 * 60))  # nobody opens a study after hours


def test_escalation_caps_the_routine_wait_that_triage_lengthens():
    # a busy room (load 0.9): triage lets low-scored ROUTINE studies wait far longer than FIFO would
    department = Department(arrivals_per_hour=27, days=5)
    routine, urgent = 30, 30
    comparison = compare(department, waits=Waits(dt.timedelta(minutes=routine), dt.timedelta(minutes=urgent)),
                         trials=4, seed=0)
    fifo, triage, escalation = (comparison.result(p).figures for p in ReadingPolicy)
    assert triage["wait", "critical", "mean"].mean < 0.5 * fifo["wait", "critical", "mean"].mean
    assert triage["wait", "routine", "max"].mean > 2 * fifo["wait", "routine", "max"].mean
    assert escalation["wait", "routine", "max"].high < triage["wait", "routine", "max"].low
    assert escalation["wait", "critical", "mean"].mean < 0.5 * fifo["wait", "critical", "mean"].mean
    shares = comparison.result("escalation")
    assert shares.opened_escalated.mean > 0 and shares.listed_stat_escalated.mean > 0
    assert comparison.result("triage").listed_stat_escalated.mean == 0


def test_a_study_waiting_past_both_waits_is_shown_stat_and_opened_as_escalated():
    department = Department(readers=1, arrivals_per_hour=20, reading_minutes=6, days=1)  # overloaded: load 2
    patients = draw_patients(department, np.random.default_rng(2))
    outcome = run(patients, department, ReadingPolicy.ESCALATION, Waits(dt.timedelta(minutes=30), dt.timedelta(minutes=30)))
    late_routine = (patients.priority_rank == 0) & (outcome.wait >= 60)
    assert late_routine.any()
    assert np.all(outcome.shown_rank[late_routine] == 2) and np.all(outcome.escalated[late_routine])


def test_student_t_quantiles():
    assert [round(t_quantile(0.975, df), 3) for df in (1, 2, 5, 9, 30)] == [12.706, 4.303, 2.571, 2.262, 2.042]
    assert round(t_quantile(0.995, 4), 3) == 4.604


@pytest.mark.parametrize("bad, message", [
    ({"readers": 0}, "at least one reader"),
    ({"sensitivity": 1.5}, "sensitivity"),
    ({"ordered_mix": (0.5, 0.5, 0.5)}, "ordered mix"),
    ({"reading_distribution": "gamma"}, "lognormal or exponential"),
    ({"days": 1, "warmup_days": 2}, "warm-up"),
])
def test_bad_parameters_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        Department(**bad)


def test_the_command_prints_json_for_its_parameters(monkeypatch):
    monkeypatch.setenv("RADTRIAGE_ESCALATE_ROUTINE_AFTER_MINUTES", "45")
    result = CliRunner().invoke(main, ["simulate", "--days", "1", "--trials", "2", "--readers", "3",
                                       "--escalate-urgent-after", "none", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["department"]["readers"] == 3 and data["trials"] == 2
    assert data["escalation"] == {"routine_after_minutes": 45.0, "urgent_after_minutes": None}  # from the setting
    assert set(data["policies"]) == {"fifo", "triage", "escalation"}
    assert set(data["policies"]["fifo"]["minutes"]["wait"]["critical"]) == {"mean", "median", "p95", "max"}


def test_the_command_prints_the_table_and_writes_the_plot(tmp_path):
    need(importlib.util.find_spec("matplotlib") is not None, "matplotlib (pip install 'radtriage[eval]')")
    plot = tmp_path / "waits.png"
    result = CliRunner().invoke(main, ["simulate", "--days", "1", "--trials", "2", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "wait (minutes)" in result.stdout and "escalation" in result.stdout
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (1000, 700)


@pytest.mark.parametrize("args, message", [
    (["--hours", "18-8"], "START-END"),
    (["--ordered-mix", "0.5,0.6"], "STAT,URGENT,ROUTINE"),
    (["--escalate-routine-after", "0"], "must be positive"),
    (["--trials", "1"], "--trials"),
])
def test_the_command_refuses_bad_options(args, message):
    result = CliRunner().invoke(main, ["simulate", *args])
    assert result.exit_code == 2 and message in result.output

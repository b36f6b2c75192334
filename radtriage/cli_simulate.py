"""``radtriage simulate``: compare FIFO, triage and triage with escalation in a simulated
reading room (``scoring.simulation``), on the same patients over seeded trials.

Wiring only: options → ``Department`` and ``Waits``, ``scoring.simulation_report.compare``, then a
table (rich), JSON or Markdown; the escalation waits default to the worklist's settings.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from radtriage.cli_options import config_option, load_cli_settings


class _Hours(click.ParamType):
    """``8-18`` (from 08:00 to 18:00, fractions allowed: ``7.5-19``) or ``none`` (around the clock)."""

    name = "START-END|none"

    def convert(self, value, param, ctx):
        from scoring.simulation_patients import WorkingHours

        if value is None or isinstance(value, WorkingHours):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            start, end = (float(part) for part in str(value).split("-"))
            return WorkingHours(start, end)
        except ValueError as exc:
            self.fail(f"{value!r} is not START-END hours within 0–24 (e.g. 8-18) or 'none' ({exc})", param, ctx)


class _Minutes(click.ParamType):
    """A positive number of minutes, or ``none`` (no escalation for that class)."""

    name = "MINUTES|none"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, dt.timedelta):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            minutes = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of minutes or 'none'", param, ctx)
        if not minutes > 0:
            self.fail(f"a maximum wait must be positive, got {value}", param, ctx)
        return dt.timedelta(minutes=minutes)


def _mix(ctx, param, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in value.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise click.BadParameter(f"{value!r}: give three shares STAT,URGENT,ROUTINE summing to 1 (e.g. 0.05,0.15,0.8)")
    return parts


_SHARE = click.FloatRange(0, 1)


@click.command()
@click.option("--arrivals-per-hour", type=click.FloatRange(0, min_open=True), default=22.0, show_default=True,
              help="Poisson arrival rate while the list is open.")
@click.option("--arrival-hours", type=_Hours(), default="8-18", show_default=True,
              help="When studies arrive, START-END o'clock, or 'none' for around the clock.")
@click.option("--hours", type=_Hours(), default="8-19", show_default=True,
              help="When readers take new studies ('none': around the clock); a read under way is finished.")
@click.option("--readers", type=click.IntRange(1), default=2, show_default=True)
@click.option("--reading-minutes", type=click.FloatRange(0, min_open=True), default=4.0, show_default=True,
              help="Mean reading time.")
@click.option("--reading-distribution", type=click.Choice(["lognormal", "exponential"]), default="lognormal",
              show_default=True)
@click.option("--reading-cv", type=click.FloatRange(0, min_open=True), default=0.6, show_default=True,
              help="Coefficient of variation of lognormal reading times.")
@click.option("--critical-prevalence", type=_SHARE, default=0.03, show_default=True,
              help="Share of studies with a critical finding.")
@click.option("--sensitivity", type=_SHARE, default=0.87, show_default=True,
              help="Share of critical studies the scorer raises.")
@click.option("--false-positive-rate", type=_SHARE, default=0.15, show_default=True,
              help="Share of non-critical studies the scorer raises.")
@click.option("--ai-priority", type=click.Choice(["STAT", "URGENT"]), default="STAT", show_default=True,
              help="Priority a study the scorer raises gets (never lower than ordered).")
@click.option("--ordered-mix", callback=_mix, default="0.05,0.15,0.80", show_default=True,
              help="Shares of studies ordered STAT,URGENT,ROUTINE.")
@click.option("--preemptive/--non-preemptive", default=False, show_default=True,
              help="Whether a more urgent study interrupts a read (which resumes later).")
@click.option("--days", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Days of arrivals per trial.")
@click.option("--warmup-days", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Studies arriving in the first days are not counted.")
@click.option("--escalate-routine-after", type=_Minutes(), default=None,
              help="Minutes before a ROUTINE study is shown URGENT ('none': never). Default: the setting.")
@click.option("--escalate-urgent-after", type=_Minutes(), default=None,
              help="Further minutes before an URGENT one is shown STAT ('none': never). Default: the setting.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--trials", type=click.IntRange(2), default=10, show_default=True)
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Level of the confidence intervals across trials.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the wait distributions per policy to this PNG (needs radtriage[eval]).")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "markdown"]), default="table",
              show_default=True)
@config_option
@click.pass_context
def simulate(ctx: click.Context, config_file: str | None, plot_path: Path | None, output_format: str, seed: int,
             trials: int, confidence: float, escalate_routine_after, escalate_urgent_after, **parameters) -> None:
    """Simulate a reading room: FIFO vs triage vs triage with escalation, on the same patients."""
    from common.reading_order import Waits
    from scoring.simulation_patients import Department
    from scoring.simulation_report import compare

    settings = load_cli_settings(config_file)

    def waited(name: str, given: dt.timedelta | None, setting: float | None) -> dt.timedelta | None:
        if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT:
            return given  # None here means the user said 'none'
        return None if setting is None else dt.timedelta(minutes=setting)

    waits = Waits(waited("escalate_routine_after", escalate_routine_after, settings.escalate_routine_after_minutes),
                  waited("escalate_urgent_after", escalate_urgent_after, settings.escalate_urgent_after_minutes))
    try:
        department = Department(**parameters)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    comparison = compare(department, waits=waits, trials=trials, seed=seed, confidence=confidence)
    if output_format == "json":
        click.echo(json.dumps(comparison.to_dict(), indent=2))
    elif output_format == "markdown":
        click.echo(_markdown(comparison))
    else:
        _print_tables(comparison)
    if plot_path is not None:
        try:
            from scoring.simulation_report import save_wait_plot

            save_wait_plot(comparison, plot_path)
        except ImportError as exc:
            raise click.ClickException(f"the plot needs matplotlib: pip install 'radtriage[eval]' ({exc})") from exc
        click.echo(f"wrote {plot_path}", err=True)


def _cell(e) -> str:
    if e.mean != e.mean:  # NaN: no study of this group
        return "–"
    if e.low != e.low:
        return f"{e.mean:.1f}"
    return f"{e.mean:.1f} ± {(e.high - e.low) / 2:.1f}"


def _share(e) -> str:
    return f"{100 * e.mean:.1f}% ± {50 * (e.high - e.low):.1f}"


def _rows(comparison, measure: str):
    from scoring.simulation_report import GROUPS, STATISTICS

    for group in GROUPS:
        for r in comparison.results:
            yield [group, str(r.policy), *(_cell(r.figures[measure, group, s]) for s in STATISTICS)]


def _share_rows(comparison):
    for r in comparison.results:
        yield [str(r.policy), _share(r.listed_stat), _share(r.listed_stat_escalated), _share(r.opened_escalated)]


_SHARE_HEADER = ["policy", "list shown STAT: clinically", "list shown STAT: escalated", "studies opened escalated"]


def _title(comparison) -> str:
    d, w = comparison.department, comparison.waits

    def minutes(x):
        return "never" if x is None else f"{x.total_seconds() / 60:g} min"

    return (f"{comparison.studies_per_trial:.0f} studies per trial ({d.days:g} days), {d.readers} readers, "
            f"load {d.utilisation():.2f}; escalation: ROUTINE after {minutes(w.routine)}, URGENT after "
            f"{minutes(w.urgent)} more; {comparison.trials} trials, mean ± half-width of the {100 * comparison.confidence:g}% CI")


def _print_tables(comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    from scoring.simulation_report import STATISTICS

    console = Console()
    console.print(_title(comparison))
    for measure in ("wait", "turnaround"):
        table = Table(title=f"{measure} (minutes)", box=None)
        for column in ["group", "policy", *STATISTICS]:
            table.add_column(column, justify="left" if column in ("group", "policy") else "right")
        for row in _rows(comparison, measure):
            table.add_row(*row)
        console.print(table)
    table = Table(title="the list in working hours")
    for column in _SHARE_HEADER:
        table.add_column(column)
    for row in _share_rows(comparison):
        table.add_row(*row)
    console.print(table)


def _markdown(comparison) -> str:
    from scoring.simulation_report import STATISTICS

    def table(header, rows):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])

    return "\n\n".join([
        _title(comparison),
        table(["group", "policy", *(f"wait {s}" for s in STATISTICS)], _rows(comparison, "wait")),
        table(_SHARE_HEADER, _share_rows(comparison)),
    ])

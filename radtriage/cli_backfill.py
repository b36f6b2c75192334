"""``radtriage backfill``: triage a folder, DICOMDIR or list of files already on disk."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from radtriage import backfill_metrics
from radtriage.cli_options import config_option, load_cli_settings, progress_bars


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--from-list", "list_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A text file with one path per line (added to PATHS)")
@click.option("--dry-run", is_flag=True, help="Only read and classify the files; store and triage nothing")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write every skipped or failed file, with why, to this tab-separated file (path, outcome, reason)")
@config_option
def backfill(paths: tuple[Path, ...], list_file: Path | None, dry_run: bool, report_file: Path | None,
             config_file: str | None) -> None:
    """Triage existing DICOM files as if the PACS had pushed them (resumable)."""
    from db.session import make_engine, migrate
    from radtriage.locations import log_locations
    from radtriage.logs import configure
    from radtriage.wiring import worker_config
    from worker import backfill as runner
    from worker.tasks import WorkerContext

    settings = load_cli_settings(config_file)
    backfill_metrics.use_daemon_metrics(settings.data_dir)
    configure("WARNING")
    targets = list(paths)
    if list_file is not None:
        targets += [Path(line.strip()) for line in list_file.read_text().splitlines() if line.strip()]
    if not targets:
        raise click.UsageError("give at least one PATH or --from-list")
    log_locations(settings, logging.getLogger("radtriage.backfill"))  # a new, empty folder is warned about
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate(make_engine(settings.effective_database_url))

    # One bar per phase: count, percentage with rate, and time left.
    with progress_bars() as bars:
        try:
            summary = runner.run(WorkerContext(worker_config(settings)), targets, dry_run=dry_run,
                                 lost_after=settings.worker_lost_seconds,
                                 progress=backfill_metrics.counting(bars.track))
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from exc
    _print(summary, dry_run)
    if report_file is not None:
        _write_report(report_file, summary.problems)
        click.echo(f"report: {len(summary.problems)} file(s) skipped or failed, in {report_file}")


def _write_report(path: Path, problems: list[tuple[str, str, str]]) -> None:
    """A TSV a spreadsheet opens: one line per file, reasons without tabs or line breaks."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(("path", "outcome", "reason"))
        writer.writerows((file, outcome, " ".join(reason.split())) for file, outcome, reason in problems)


def _print(summary, dry_run: bool) -> None:
    click.echo(f"files: {summary.files}")
    click.echo(f"  {'would be stored' if dry_run else 'stored'}: {summary.stored}")
    if not dry_run:
        click.echo(f"  already stored: {summary.already_stored}")
    click.echo(f"  skipped: {sum(summary.skipped.values())}")
    for reason, count in summary.skipped.most_common():
        click.echo(f"    {count} × {reason}")
    if dry_run:
        return
    click.echo(f"studies: {summary.studies}")
    click.echo(f"  scored: {summary.scored}")
    click.echo(f"  not scored: {sum(summary.not_scored.values())}")
    for reason, count in summary.not_scored.most_common():
        click.echo(f"    {count} × {reason}")
    click.echo(f"  failed: {sum(summary.failed.values())}")
    for reason, count in summary.failed.most_common():
        click.echo(f"    {count} × {reason}")

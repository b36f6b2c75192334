"""``radtriage purge``: apply the retention period now, or (``--dry-run``) show what it would remove."""

from __future__ import annotations

import datetime as dt

import click

from radtriage.cli_options import config_option, load_cli_settings

__all__ = ["purge"]


@click.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be purged; remove nothing")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Purge what is older than this many days (default: the retention_days setting)")
@config_option
def purge(dry_run: bool, days: int | None, config_file: str | None) -> None:
    """Purge stored images, embeddings, sent outbox rows, events and sent deliveries older than the
    retention period; studies, their scores and the audit trail stay."""
    from db.retention import purge as run_purge
    from db.session import make_engine, make_session_factory, migrate

    settings = load_cli_settings(config_file)
    days = days or settings.retention_days
    if not days:
        raise click.UsageError("retention_days is 0 (keep everything): set it, or give --days")
    engine = make_engine(settings.effective_database_url)
    migrate(engine)
    purged = run_purge(make_session_factory(engine), data_dir=settings.data_dir.resolve(),
                       older_than=dt.timedelta(days=days), dry_run=dry_run)
    engine.dispose()
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} what is older than {days} days:")
    click.echo(f"  images: {purged.images} ({purged.image_bytes / 1e6:.1f} MB)")
    for label, count in (("embeddings", purged.embeddings), ("outbox rows", purged.outbox),
                         ("events", purged.events), ("sent deliveries", purged.deliveries)):
        click.echo(f"  {label}: {count}")

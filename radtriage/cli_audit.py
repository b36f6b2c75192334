"""``radtriage audit``: print the audit trail (who viewed, claimed, released, read, exported) as CSV or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import sys

import click

from db.audit import entries_since
from radtriage.cli_options import config_option
from radtriage.cli_users import migrated_session

__all__ = ["audit", "parse_since"]

_AGO = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_COLUMNS = ("at", "user", "action", "study_id", "address", "detail")


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``1h``, ``30m``, ``7d``, ``2w`` ago, or an ISO 8601 time (UTC when it names no offset).

    Raises
    ------
    ValueError
        ``text`` is neither.
    """
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(**{_UNITS[ago[2]]: int(ago[1])})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since {text!r}: give an ISO 8601 time or an age such as 1h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class _Since(click.ParamType):
    name = "ISO8601|AGE"

    def convert(self, value, param, ctx):
        try:
            return value if isinstance(value, dt.datetime) else parse_since(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@config_option
@click.option("--since", type=_Since(), default="24h", show_default=True,
              help="Rows recorded since this ISO 8601 time or this long ago (30m, 1h, 7d, 2w)")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
def audit(config_file: str | None, since: dt.datetime, fmt: str) -> None:
    """Print the audit trail to stdout: time (UTC), user, action, study id, address, detail."""
    with migrated_session(config_file) as session:
        rows = entries_since(session, since=since)
    records = [{"at": r.at.isoformat(), "user": r.user, "action": r.action.value, "study_id": r.study_id,
                "address": r.address, "detail": r.detail} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(records, indent=1))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)

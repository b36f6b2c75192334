"""What every ``radtriage`` command shares: the ``--config`` option, the one settings loader, progress bars."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from radtriage.settings import Settings, load_settings

__all__ = ["ProgressBars", "config_option", "load_cli_settings", "progress_bars"]

T = TypeVar("T")

config_option = click.option(
    "--config", "config_file", type=click.Path(exists=True, dir_okay=False), default=None,
    help="TOML settings file (environment variables still win). Default: $RADTRIAGE_CONFIG.",
)


def load_cli_settings(config_file: str | None) -> Settings:
    """The settings from the environment and ``--config``; the hub stays offline unless told otherwise.

    Raises
    ------
    click.ClickException
        The settings file is missing or malformed, or a value is invalid.
    """
    try:
        settings = load_settings(config_file)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc
    # Offline by design: models load from local folders or the local Hugging Face cache only,
    # unless the operator explicitly sets HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return settings


class ProgressBars:
    """Progress bars on one rich display (count, percentage and rate, time left); see :func:`progress_bars`."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress

    def track(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items``, advancing a bar named ``label`` after each (total: ``len(items)`` if not given)."""
        if total is None and isinstance(items, Sized):
            total = len(items)
        task = self._progress.add_task(label, total=total)
        for item in items:
            yield item
            self._progress.advance(task)

    def counter(self, label: str, total: int) -> Callable[[], None]:
        """A bar named ``label`` and the callback that advances it by one step."""
        task = self._progress.add_task(label, total=total)
        return lambda: self._progress.advance(task)


@contextmanager
def progress_bars(*, transient: bool = False) -> Iterator[ProgressBars]:
    """Progress bars on stderr (stdout stays for results); ``transient``: erased when done."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(show_speed=True), _rate_column(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=transient) as progress:
        yield ProgressBars(progress)


def _rate_column():
    """Items per second of a bar whose total is known (rich's own column shows speed only without one)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None or task.total is None else f"{speed:.1f}/s", style="progress.data.speed")

    return RateColumn()

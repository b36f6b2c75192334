"""Shared pieces of the reliability suite: what a process holds (from /proc) and how figures are reported.

Every reliability test reports what it measured through :func:`report`: one line per figure on
the terminal (whether or not pytest captures output) and in ``reliability-figures.jsonl``
under pytest's base temporary folder, so a CI run keeps them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def percentile(values: Iterable[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settle(measure: Callable[[], int], target: int, *, slack: int = 0, seconds: float = 15.0) -> int:
    """Wait until ``measure()`` is back within ``slack`` of ``target``; returns the last value."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > target + slack and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()
    return value


def report(request: pytest.FixtureRequest, **figures) -> None:
    """Print the figures a test measured, to the terminal even under capture, and keep them in a file."""
    name = request.node.name
    line = f"[reliability] {name}: " + ", ".join(f"{key}={_fmt(value)}" for key, value in figures.items())
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    base = request.config._tmp_path_factory.getbasetemp()  # pytest's base temporary folder
    with open(Path(base) / "reliability-figures.jsonl", "a") as out:
        out.write(json.dumps({"test": name, **figures}, default=str) + "\n")


def _fmt(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

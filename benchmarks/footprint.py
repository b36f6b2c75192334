"""Idle memory of the daemon without models: every process of ``radtriage serve``'s tree, summed.

Starts ``radtriage serve`` (no model weights, so nothing is loaded that a site's models would
add), waits until its workers beat and it has settled, then reads each process of its tree
from /proc: RSS, and PSS from ``/proc/PID/smaps_rollup`` (shared pages split between the
processes that share them, so the sum is what the tree really costs). With ``--baseline
REV`` the same is measured, alternating, on a copy of the repository at that git revision
(``git archive``), so both see the same machine. Goal: <= 400 MB in all.

    python benchmarks/footprint.py [--baseline REV] [--repeats 3] [--settle 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.daemon import Daemon
from tests.reliability.harness import process_tree

GOAL_MB = 400


def memory(pid: int) -> tuple[str, float, float]:
    """(what the process runs, RSS MB, PSS MB; PSS is RSS where smaps_rollup is unreadable)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    words = [a.decode(errors="replace") for a in args if a]
    name = " ".join(w for w in words[1:4] if not w.startswith("/")) or words[0]
    rss = _kib(Path(f"/proc/{pid}/status"), "VmRSS")
    try:
        pss = _kib(Path(f"/proc/{pid}/smaps_rollup"), "Pss")
    except (OSError, KeyError):
        pss = rss
    return name, rss / 1024, pss / 1024


def _kib(path: Path, field: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(label: str, folder: Path, settle: float, pythonpath: Path | None) -> tuple[float, float, list]:
    env = {"RADTRIAGE_MEDGEMMA_MODEL": str(folder / "no-medgemma"), "RADTRIAGE_LOG_LEVEL": "WARNING"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    with Daemon(folder, **env) as daemon:
        time.sleep(settle)  # start-up work done, workers idle
        rows = []
        for pid in process_tree(daemon.proc.pid):
            try:
                rows.append((pid, *memory(pid)))
            except (OSError, KeyError):
                continue  # ended meanwhile
    return sum(r[2] for r in rows), sum(r[3] for r in rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=None, help="git revision to compare with (e.g. a commit before a change)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait after the workers beat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as tmp:
        tmp = Path(tmp)
        trees: dict[str, Path | None] = {"current": None}
        if args.baseline:
            base = tmp / "baseline-tree"
            base.mkdir()
            archive = subprocess.run(["git", "archive", args.baseline], cwd=REPO, capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            trees = {f"baseline {args.baseline}": base, "current": None}
        totals: dict[str, list[tuple[float, float]]] = {label: [] for label in trees}
        last_rows: dict[str, list] = {}
        for repeat in range(args.repeats):
            for label, pythonpath in trees.items():  # alternating, so both see the same machine
                rss, pss, rows = measure(label, tmp / f"run-{repeat}-{len(totals[label])}-{label[:4]}", args.settle,
                                         pythonpath)
                totals[label].append((rss, pss))
                last_rows[label] = rows
        print(f"idle daemon without models, {os.cpu_count()} CPU cores, {args.repeats} runs each")
        for label, rows in last_rows.items():
            print(f"\n{label}: processes of the last run")
            for pid, name, rss, pss in rows:
                print(f"  {pid:>7}  RSS {rss:7.1f} MB  PSS {pss:7.1f} MB  {name}")
        print()
        for label, values in totals.items():
            pss = [v[1] for v in values]
            rss = [v[0] for v in values]
            print(f"{label:<24} processes {len(last_rows[label])}  PSS min {min(pss):6.1f} median "
                  f"{statistics.median(pss):6.1f} MB  RSS median {statistics.median(rss):6.1f} MB"
                  f"  goal <= {GOAL_MB} MB: {'met' if statistics.median(pss) <= GOAL_MB else 'NOT met'}")
        if args.baseline:
            base_label = next(iter(totals))
            ratio = statistics.median(v[1] for v in totals["current"]) / statistics.median(
                v[1] for v in totals[base_label])
            print(f"current / baseline (median PSS): {ratio:.2f}x")


if __name__ == "__main__":
    main()

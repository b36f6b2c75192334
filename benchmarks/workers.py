"""Triage throughput of one worker process against N: does ``radtriage worker -c N`` use N cores?

For each process count (--processes, default 1,2), alternating and repeated: a fresh data
folder (SQLite, embedded broker), ``radtriage worker -c N`` started as a user would (the solo
pool for 1, prefork with each child's TensorFlow limited to its share of the cores for more),
warmed up with 2N studies so every child has loaded the stand-in CXR Foundation, then
--studies two-view studies (images of --size) queued at once; throughput = studies / (time
from publishing them to the last priority committed). Prints studies/s min/median per N, the
ratio to one process, the cores the worker's processes kept busy and studies per CPU-second (on
a shared machine the busy cores say how much CPU the processes got).

    python benchmarks/workers.py [--size 2500x2000] [--studies 40] [--repeat 3] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from db.models import Study
from db.session import make_engine, make_session_factory
from tests.factories import chest_radiograph
from tests.integration.worker_support import complete_all, ingest, worker_context
from tests.standins import build_cxr_foundation_standin
from worker.loops import OutboxRelay
from worker.tasks import create_app


class Studies:
    """Two-view studies of one size; each new one differs in its UIDs and, slightly, its pixels."""

    def __init__(self, rows: int, cols: int) -> None:
        self.views = [chest_radiograph(rows, cols, seed=1, view="PA"), chest_radiograph(rows, cols, seed=2, view="LL")]
        self.pixels = [np.frombuffer(ds.PixelData, dtype=np.uint16) for ds in self.views]
        self.made = 0

    def next(self) -> list:
        self.made += 1
        study_uid = generate_uid()
        out = []
        for template, pixels in zip(self.views, self.pixels, strict=True):
            ds = copy.deepcopy(template)
            ds.StudyInstanceUID, ds.SOPInstanceUID = study_uid, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PixelData = (pixels + np.uint16(self.made % 64)).tobytes()
            out.append(ds)
        return out


def _triaged(reads) -> tuple[int, float | None]:
    """How many studies are triaged, and when the last was (epoch seconds)."""
    with reads() as session:  # read-only: watching must not take SQLite's write lock from the workers
        n, last = session.execute(select(func.count(), func.max(Study.triaged_at)).where(
            Study.triaged_at.is_not(None))).one()
    if last is None:
        return n, None
    return n, (last if last.tzinfo else last.replace(tzinfo=dt.UTC)).timestamp()


def _tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root`` and every process below it (children, heartbeat sidecars)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree, found = {root}, True
    while found:
        found = {pid for pid, (ppid, _) in stats.items() if ppid in tree and pid not in tree}
        tree |= found
    return sum(stats[pid][1] for pid in tree if pid in stats)


def _queue(ctx, studies: Studies, count: int, relay: OutboxRelay) -> float:
    """Receive ``count`` studies, complete them, publish them; returns when they were published."""
    for _ in range(count):
        for ds in studies.next():
            ingest(ctx, ds)
    complete_all(ctx)
    published_at = time.time()
    relay.run_once()
    return published_at


def _wait(reads, count: int, worker: subprocess.Popen, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while True:
        n, last = _triaged(reads)
        if n >= count:
            return last
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the worker stopped or stalled after {n} of {count} studies")
        time.sleep(0.05)


def run(folder: Path, model_dir: Path, processes: int, studies: Studies, count: int) -> tuple[float, float]:
    """Studies per second of ``radtriage worker -c processes``, and the cores its processes kept busy."""
    ctx = worker_context(folder, model_dir)
    reads = make_session_factory(make_engine(ctx.config.database_url), readonly=True)
    relay = OutboxRelay(app=create_app(ctx.config.broker), sessions=ctx.sessions)
    env = {**os.environ, "RADTRIAGE_DATA_DIR": str(ctx.config.data_dir), "RADTRIAGE_CXR_FOUNDATION_DIR": str(model_dir),
           "RADTRIAGE_MEDGEMMA_MODEL": str(folder / "no-medgemma"), "TF_CPP_MIN_LOG_LEVEL": "2",
           "RADTRIAGE_LOG_LEVEL": "WARNING"}
    log = (folder / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "radtriage", "worker", "--queues", "triage",
                               "-c", str(processes), "--quiet"], cwd=folder, env=env, stdout=log, stderr=log)
    try:
        warm = 2 * processes  # every child loads its model before the measurement
        _queue(ctx, studies, warm, relay)
        _wait(reads, warm, worker)
        cpu = _tree_cpu(worker.pid)
        published = _queue(ctx, studies, count, relay)
        last = _wait(reads, warm + count, worker)
        # Includes receiving the studies (not the worker's) only as the worker's idle polling.
        return count / (last - published), (_tree_cpu(worker.pid) - cpu) / (time.time() - published)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2500x2000", help="image size ROWSxCOLUMNS")
    parser.add_argument("--studies", type=int, default=40, help="studies timed per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per process count")
    parser.add_argument("--processes", default="1,2", help="worker process counts (-c), the first is the baseline")
    args = parser.parse_args()
    rows, cols = (int(n) for n in args.size.lower().split("x"))
    counts = [int(n) for n in args.processes.split(",")]
    print(f"two-view studies of {rows}x{cols}, {args.studies} per run, {args.repeat} runs per process count; "
          f"stand-in CXR Foundation; {len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.2f}")
    rates: dict[int, list[float]] = {n: [] for n in counts}
    busy: dict[int, list[float]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_cxr_foundation_standin(tmp / "model")
        studies = Studies(rows, cols)
        for i in range(args.repeat):
            for n in counts:  # alternate, so every count sees the same machine load
                rate, cores = run(tmp / f"run-{i}-{n}", model_dir, n, studies, args.studies)
                rates[n].append(rate)
                busy[n].append(cores)
                print(f"  run {i + 1}, -c {n}: {rate:.2f} studies/s, worker processes busy {cores:.2f} cores "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
    base = statistics.median(rates[counts[0]])
    for n in counts:
        # Studies per CPU-second of the worker's processes: equal for 1 and N when nothing (a lock,
        # oversubscribed threads, dispatch gaps) wastes what the processes get; then N processes
        # reach N x on N otherwise idle cores.
        per_cpu = statistics.median(r / b for r, b in zip(rates[n], busy[n], strict=True))
        print(f"-c {n}: {min(rates[n]):6.2f} / {statistics.median(rates[n]):6.2f} studies/s (min / median)  "
              f"{statistics.median(rates[n]) / base:.2f}x of -c {counts[0]}; "
              f"{statistics.median(busy[n]):.2f} cores busy, {per_cpu:.1f} studies per CPU-second (medians)")


if __name__ == "__main__":
    main()

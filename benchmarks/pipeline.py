"""Time from a study's last C-STORE response to its priority being committed, and where it goes.

Runs ``radtriage serve`` (stand-in CXR Foundation, built here) on the embedded default (file
broker, SQLite), or with --redis on Redis + PostgreSQL, and pushes two-view studies (PA +
lateral, one association each, images of --size) in rounds of N at once for each N of
--concurrent, waiting for a round to be triaged before the next. Prints p50/p95/max latency
per N and the median of each stage (completion, outbox relay, worker pickup, triage).
Goals (issue 17): at 2500x2000, p95 <= 1 s one at a time and <= 2 s with four at once.

With --baseline REF a second daemon runs the code of git revision REF (exported with
``git archive``) beside the working tree's, and rounds alternate between the two, so both
see the same machine load.

    python benchmarks/pipeline.py [--size 2500x2000] [--studies 20] [--concurrent 1,4]
                                  [--baseline 1b17cf8] [--redis]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text

from tests.e2e.daemon import Daemon, c_store
from tests.factories import chest_radiograph
from tests.standins import build_cxr_foundation_standin

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
STAGES = ("completion", "relay", "pickup", "triage")


def two_view_study(rows: int, cols: int, seed: int):
    pa = chest_radiograph(rows, cols, seed=seed, view="PA")
    return [pa, chest_radiograph(rows, cols, seed=seed + 1, view="LL", study_uid=str(pa.StudyInstanceUID))]


class Target:
    """One running daemon and what was sent to it."""

    def __init__(self, label: str, daemon: Daemon, url: str) -> None:
        self.label, self.daemon, self.url = label, daemon, url
        self.engine = create_engine(url)
        self.sent: dict[str, tuple[int, float]] = {}  # study UID -> (round size, time of last response)

    def push_round(self, studies: list[list]) -> None:
        """Send the studies at once (one association each) and wait until all are triaged."""
        def send(datasets) -> None:
            statuses = c_store(self.daemon.dicom_port, datasets)
            assert statuses == [0] * len(datasets), statuses
            self.sent[str(datasets[0].StudyInstanceUID)] = (len(studies), time.time())

        with ThreadPoolExecutor(len(studies)) as pool:
            for future in [pool.submit(send, datasets) for datasets in studies]:
                future.result()  # raises what a sender raised
        uids = [str(datasets[0].StudyInstanceUID) for datasets in studies]
        deadline = time.monotonic() + 300
        while self._triaged(uids) < len(uids):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label}: round not triaged in 300 s\n{self.daemon.log()[-4000:]}")
            time.sleep(0.1)

    def _triaged(self, uids: list[str]) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                text("SELECT COUNT(*) FROM studies WHERE triaged_at IS NOT NULL AND study_instance_uid IN "
                     f"({','.join(f':u{i}' for i in range(len(uids)))})"),
                {f"u{i}": uid for i, uid in enumerate(uids)},
            ).scalar_one()

    def report(self) -> dict[int, float]:
        """Prints one line per round size; returns its p95."""
        with self.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT s.study_instance_uid, s.triaged_at, "
                " (SELECT MIN(e.created_at) FROM events e WHERE e.study_id = s.id AND e.stage = 'complete'),"
                " (SELECT MIN(o.sent_at) FROM outbox o WHERE o.study_id = s.id AND o.task = 'triage'),"
                " (SELECT MIN(e.created_at) FROM events e WHERE e.study_id = s.id AND e.stage = 'triaging') "
                "FROM studies s")).all()
        self.engine.dispose()
        by_size: dict[int, list[tuple[float, ...]]] = {}
        for uid, *marks in rows:
            if uid not in self.sent:
                continue  # the warm-up study
            size, sent = self.sent[uid]
            times = [_seconds(m) for m in marks]
            triaged, complete, published, claimed = times
            by_size.setdefault(size, []).append(
                (triaged - sent, complete - sent, published - complete, claimed - published, triaged - claimed))
        p95s = {}
        for size, found in sorted(by_size.items()):
            latencies = sorted(f[0] for f in found)
            p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
            goal = 1.0 if size == 1 else 2.0
            stages = "  ".join(f"{name} {statistics.median(f[i + 1] for f in found):.3f}"
                               for i, name in enumerate(STAGES))
            print(f"  {self.label:<26} {size} at once: n={len(latencies):3d}  p50={statistics.median(latencies):6.3f} s"
                  f"  p95={p95:6.3f} s  max={latencies[-1]:6.3f} s  (goal p95 <= {goal:.0f} s: "
                  f"{'met' if p95 <= goal else 'NOT met'})\n  {'':<26} median s per stage: {stages}")
            p95s[size] = p95
        return p95s


def _seconds(value) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def export_revision(ref: str, folder: Path) -> Path:
    """The tracked files of ``ref`` under ``folder`` (git archive: the repository is not touched)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


@contextlib.contextmanager
def start(label: str, folder: Path, model_dir: Path, *, code: Path | None, redis: bool, warm: list):
    env = {"RADTRIAGE_CXR_FOUNDATION_DIR": str(model_dir), "RADTRIAGE_STABLE_SECONDS": "5"}
    if code is not None:
        env["PYTHONPATH"] = str(code)  # ahead of the editable install of the working tree
    schema = None
    if redis:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with create_engine(POSTGRES).begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        env.update(RADTRIAGE_DATABASE_URL=url, RADTRIAGE_BROKER_URL=REDIS, RADTRIAGE_BROKER_KEY_PREFIX=f"{schema}:")
    try:
        with Daemon(folder, **env) as daemon:
            url = url if redis else f"sqlite:///{daemon.data_dir / 'radtriage.sqlite3'}"
            target = Target(label, daemon, url)
            c_store(daemon.dicom_port, warm)  # loads the model in the worker, outside the measurement
            daemon.wait_triaged(1, timeout=300)
            yield target
    finally:
        if schema:
            with create_engine(POSTGRES).begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2500x2000", help="image size ROWSxCOLUMNS")
    parser.add_argument("--studies", type=int, default=20, help="studies per round size (and per daemon)")
    parser.add_argument("--concurrent", default="1,4", help="round sizes: studies sent at once")
    parser.add_argument("--baseline", metavar="REF", help="also run git revision REF, rounds alternating")
    parser.add_argument("--redis", action="store_true", help="Redis + PostgreSQL instead of files + SQLite")
    args = parser.parse_args()
    rows, cols = (int(n) for n in args.size.lower().split("x"))
    sizes = [int(n) for n in args.concurrent.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_cxr_foundation_standin(tmp / "model")
        codes = {"current": None}
        if args.baseline:
            codes = {f"baseline {args.baseline}": export_revision(args.baseline, tmp / "baseline-code"), **codes}
        kind = "Redis + PostgreSQL" if args.redis else "embedded (files + SQLite)"
        print(f"{kind}; two-view studies of {rows}x{cols}; rounds of {sizes} at once, {args.studies} studies each; "
              f"stand-in CXR Foundation; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        with contextlib.ExitStack() as stack:
            targets = [
                stack.enter_context(start(label, tmp / f"daemon{i}", model_dir, code=code, redis=args.redis,
                                          warm=two_view_study(rows, cols, 10_000 + 10 * i)))
                for i, (label, code) in enumerate(codes.items())
            ]
            seed = 0
            for size in sizes:
                for _ in range(max(1, args.studies // size)):
                    for target in targets:  # alternate: both see the same machine load
                        studies = [two_view_study(rows, cols, seed + 2 * k) for k in range(size)]
                        seed += 2 * size
                        target.push_round(studies)
                        time.sleep(0.3)
            for target in targets:
                target.report()


if __name__ == "__main__":
    main()

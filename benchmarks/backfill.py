"""Backfill at archive scale: studies per second and the process's peak memory, streaming vs before.

Generates archives of two-image studies (PA + lateral, 512x512, 12-bit) and backfills each
with the stand-in CXR Foundation (built here), once with today's streaming runner
(``worker.backfill.run``) and once with the path it replaced (read and store every file,
then complete every study, then triage them: kept below as the baseline), each in a fresh
process on an empty data folder, alternating, ``--repeats`` times. Prints studies/s (min and
median) and the peak resident memory of the backfill (RSS summed over its process and its
intake process, sampled while it runs), and the ratio of peak memory between the smallest and the largest archive
(goal: within 10%; >= 50 studies/s).

    python benchmarks/backfill.py [--studies 1000,10000] [--repeats 3] [--large-repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.harness import process_tree  # noqa: E402


def make_archive(folder: Path, studies: int) -> None:
    """``studies`` two-view studies, one folder each (1,000 to a parent folder), distinct pixels."""
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.factories import radiograph

    pixels = np.frombuffer(radiograph(size=512, seed=1).PixelData, dtype=np.uint16).copy()
    for number in range(studies):
        study_uid = generate_uid()
        target = folder / f"{number // 1000:03d}" / f"{number:06d}"
        target.mkdir(parents=True, exist_ok=True)
        for index, view in enumerate(("PA", "LL")):
            ds = radiograph(size=8, seed=number, view=view, study_uid=study_uid)
            ds.Rows = ds.Columns = 512
            pixels[:3] = (number & 0xFFF, index, number >> 12)  # every file's content differs
            ds.PixelData = pixels.tobytes()
            ds.save_as(target / f"{index}.dcm", enforce_file_format=True)


def baseline_run(ctx, paths):
    """The backfill before streaming: every file read and stored first (its path and study kept
    in lists), then every study completed in one transaction, then each triaged in turn."""
    from db import backfill as db_backfill
    from db.ingest import IngestOutcome
    from dicom.acceptance import identify
    from dicom.errors import InvalidDataset
    from dicom.intake import take_in
    from worker.backfill.files import discover, read_part10
    from worker.tasks.triage import run_triage

    files = discover(paths)
    study_ids, files_of = [], {}
    for path in files:
        try:
            raw, ds, syntax = read_part10(path)
            new = identify(ds, syntax, accepted_sop_classes=ctx.config.accepted_sop_classes)
        except InvalidDataset:
            continue
        recorded = take_in(raw, new, data_dir=ctx.data_dir, sessions=ctx.sessions)
        assert recorded.outcome is not IngestOutcome.DUPLICATE
        study_ids.append(recorded.study_id)
        files_of.setdefault(recorded.study_id, []).append(path)
    study_ids = list(dict.fromkeys(study_ids))
    with ctx.sessions() as session:
        waiting = db_backfill.complete_for_backfill(session, study_ids=study_ids)
    for study_id, revision in waiting:
        run_triage(ctx, study_id, revision)
    with ctx.sessions() as session:
        states = db_backfill.final_states(session, study_ids=study_ids)
    return sum(1 for _status, score, _reasons in states.values() if score is not None)


def child(path: str, archive: Path, data_dir: Path) -> None:
    """One backfill in this process; prints JSON: seconds, studies scored, peak RSS (MiB)."""
    from db.session import make_engine, migrate
    from radtriage.settings import load_settings
    from radtriage.wiring import worker_config
    from worker import backfill as runner
    from worker.tasks import WorkerContext

    settings = load_settings(None)
    data_dir.mkdir(parents=True, exist_ok=True)
    migrate(make_engine(settings.effective_database_url))
    ctx = WorkerContext(worker_config(settings))
    triager, reason = ctx.triager()  # the model loads outside the measurement
    assert triager is not None, reason
    sampler = _TreePeak(os.getpid()).start()  # the streaming backfill's intake process counts too
    started = time.perf_counter()
    if path == "streaming":
        scored = runner.run(ctx, [archive]).scored
    else:
        scored = baseline_run(ctx, [archive])
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "scored": scored, "peak_mib": sampler.stop() / 1024}))


class _TreePeak:
    """The largest sum of RSS over a process and its descendants, sampled every 0.1 s (KiB)."""

    def __init__(self, root: int) -> None:
        self.root, self.peak = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> _TreePeak:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            total = 0
            for pid in process_tree(self.root):
                try:
                    total += _status_kib("VmRSS", pid)
                except (OSError, KeyError):
                    pass  # ended meanwhile
            self.peak = max(self.peak, total)


def _status_kib(field: str, pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure(path: str, archive: Path, data_dir: Path, model_dir: Path) -> dict:
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RADTRIAGE_")}
    env.update(RADTRIAGE_DATA_DIR=str(data_dir), RADTRIAGE_CXR_FOUNDATION_DIR=str(model_dir),
               RADTRIAGE_MEDGEMMA_MODEL=str(data_dir.parent / "no-medgemma"), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, __file__, "--child", path, str(archive), str(data_dir)],
                          env=env, cwd=REPO, capture_output=True, text=True, check=False)
    shutil.rmtree(data_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{path} backfill failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", default="1000,10000", help="archive sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path on the first archive")
    parser.add_argument("--large-repeats", type=int, default=1, help="runs of each path on the larger archives")
    parser.add_argument("--skip-baseline-large", action="store_true", help="baseline on the first archive only")
    parser.add_argument("--child", nargs=3, metavar=("PATH", "ARCHIVE", "DATA_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return

    from tests.standins import build_cxr_foundation_standin

    sizes = [int(n) for n in args.studies.split(",")]
    peaks: dict[str, dict[int, float]] = {"baseline": {}, "streaming": {}}
    print(f"backfill of two-view 512x512 studies, stand-in CXR Foundation, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        tmp = Path(tmp)
        model_dir = build_cxr_foundation_standin(tmp / "model")
        for number, size in enumerate(sizes):
            archive = tmp / f"archive-{size}"
            make_archive(archive, size)
            repeats = args.repeats if number == 0 else args.large_repeats
            paths = ["baseline", "streaming"] if number == 0 or not args.skip_baseline_large else ["streaming"]
            rates: dict[str, list[float]] = {path: [] for path in paths}
            for _ in range(repeats):
                for path in paths:  # alternating, so both see the same noise
                    result = measure(path, archive, tmp / "data", model_dir)
                    assert result["scored"] == size, result
                    rates[path].append(size / result["seconds"])
                    peaks[path][size] = max(peaks[path].get(size, 0.0), result["peak_mib"])
            shutil.rmtree(archive)
            for path in paths:
                print(f"{size:6d} studies  {path:<9}  studies/s min {min(rates[path]):6.1f}  "
                      f"median {statistics.median(rates[path]):6.1f}  peak RSS {peaks[path][size]:7.1f} MiB"
                      f"  ({len(rates[path])} runs)")
            if "baseline" in rates:
                ratio = statistics.median(rates["streaming"]) / statistics.median(rates["baseline"])
                print(f"{size:6d} studies  streaming / baseline throughput (medians): {ratio:.2f}x"
                      f"  goal >= 50 studies/s: {'met' if min(rates['streaming']) >= 50 else 'NOT met'}")
    for path, by_size in peaks.items():
        if len(by_size) > 1:
            small, large = by_size[min(by_size)], by_size[max(by_size)]
            print(f"{path:<9} peak RSS {max(by_size)} vs {min(by_size)} studies: {large / small:.3f}x"
                  f"  goal within 10%: {'met' if large <= 1.1 * small else 'NOT met'}")


if __name__ == "__main__":
    main()

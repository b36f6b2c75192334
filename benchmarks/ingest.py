"""C-STORE throughput of ``radtriage serve`` against DCMTK ``storescp``, and listener memory growth.

Sends the same instances, (a) chest-X-ray sized (2500x2000, 16-bit, ~10 MB) and (b) 512x512,
over 1 and 4 associations (DCMTK ``dcmsend`` processes in parallel) to radtriage (fsync of
file and folder, SQLite row, the whole daemon running) and to ``storescp --fork`` (no
fsync, no database), each warmed up by a short untimed burst, and prints instances/s (the
best of ``--repeats`` runs, each on a fresh server) and the ratio. Then it opens N short
associations (one C-STORE each) to radtriage and prints how much its memory grew.

storescp cannot bind loopback only, so the benchmark re-runs itself inside a private
network namespace (``unshare -n``, root) with both servers there. Not a test.

    python benchmarks/ingest.py [--cxr 24] [--small 200] [--short-associations 5000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.uid import generate_uid  # noqa: E402

from tests.e2e.daemon import Daemon, free_port  # noqa: E402
from tests.factories import radiograph, write  # noqa: E402

IN_NAMESPACE = "RADTRIAGE_BENCH_NETNS"


def make_instances(folder: Path, count: int, rows: int, columns: int) -> list[Path]:
    import numpy as np

    template = radiograph(size=8)
    template.Rows, template.Columns = rows, columns
    rng = np.random.default_rng(0)
    template.PixelData = rng.integers(0, 4096, (rows, columns), dtype=np.uint16).tobytes()
    paths = []
    for i in range(count):
        template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(write(template, folder, f"{i:05d}.dcm"))
    return paths


def push(port: int, files: list[Path], associations: int) -> float:
    """Seconds for ``associations`` parallel dcmsend processes to send ``files``."""
    chunks = [files[i::associations] for i in range(associations)]
    started = time.perf_counter()
    procs = [subprocess.Popen(["dcmsend", "-aec", "RADTRIAGE", "127.0.0.1", str(port), *map(str, chunk)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for chunk in chunks]
    for proc in procs:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"dcmsend failed: {err.decode(errors='replace')[-500:]}")
    return time.perf_counter() - started


class StoreScp:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()

    def __enter__(self) -> "StoreScp":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["storescp", "--fork", "-aet", "RADTRIAGE", "-od", str(self.folder),
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def listener_rss_mb(pid: int) -> float:
    """The daemon process plus its listener pool members (``radtriage.listener_member``)."""
    members = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
               if b"radtriage.listener_member" in _read(p) and _parent(int(p.parent.name)) == pid]
    return rss_mb(pid) + sum(rss_mb(member) for member in members)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    stat = _read(Path(f"/proc/{pid}/stat")).decode(errors="replace")
    return int(stat.rsplit(")", 1)[1].split()[1]) if ")" in stat else -1


def short_associations(port: int, count: int, threads: int = 4) -> None:
    from dicom.scu import send_datasets

    def run(n: int) -> None:
        for _ in range(n):
            ds = radiograph(size=16)
            assert send_datasets("127.0.0.1", port, "RADTRIAGE", "BENCH", [ds]) == [0]

    workers = [threading.Thread(target=run, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def throughput(work: Path, sets: dict[str, list[Path]], repeats: int) -> None:
    # Both servers first take a short burst (4 associations of 2 small instances) that is not
    # timed: what is measured is a running server's rate, not its first-request start-up
    # (radtriage's listener processes import and compile lazily; storescp has nothing to warm).
    warm_up = make_instances(work / "warm-up", 8, 64, 64)
    print(f"{'instances':<22}{'assoc':>6}{'radtriage/s':>14}{'storescp/s':>13}{'ratio':>8}")
    for label, files in sets.items():
        for associations in (1, 4):
            best = {"radtriage": 0.0, "storescp": 0.0}
            for attempt in range(repeats):
                # A fresh daemon and a fresh storescp each time: every instance is new to them.
                folder = work / f"rt-{associations}-{attempt}"
                folder.mkdir()
                with Daemon(folder) as daemon:
                    push(daemon.dicom_port, warm_up, 4)
                    best["radtriage"] = max(best["radtriage"], len(files) / push(daemon.dicom_port, files, associations))
                    stored = len(list((daemon.data_dir / "objects").rglob("*.dcm")))
                    assert stored == len(files) + len(warm_up), f"radtriage stored {stored} of {len(files)}"
                shutil.rmtree(folder, ignore_errors=True)
                with StoreScp(work / "storescp") as scp:
                    push(scp.port, warm_up, 4)
                    best["storescp"] = max(best["storescp"], len(files) / push(scp.port, files, associations))
            print(f"{label:<22}{associations:>6}{best['radtriage']:>14.1f}{best['storescp']:>13.1f}"
                  f"{best['radtriage'] / best['storescp']:>8.2f}", flush=True)


def memory(work: Path, count: int) -> None:
    (work / "memory").mkdir()
    with Daemon(work / "memory") as daemon:
        short_associations(daemon.dicom_port, 200)  # warm-up: imports, caches, thread pools
        before = listener_rss_mb(daemon.proc.pid)
        started = time.perf_counter()
        short_associations(daemon.dicom_port, count)
        after = listener_rss_mb(daemon.proc.pid)
        print(f"\nlistener memory (daemon and listener processes) over {count} short associations (one C-STORE each, "
              f"{count / (time.perf_counter() - started):.0f}/s): {before:.1f} MB -> {after:.1f} MB, "
              f"growth {after - before:+.1f} MB (goal <= 20 MB)")


def listener_processes_label() -> str:
    value = os.environ.get("RADTRIAGE_DICOM_LISTENER_PROCESSES", "0")
    return f"{value} (auto: one per core)" if value == "0" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cxr", type=int, default=24, help="CXR-sized instances per run")
    parser.add_argument("--small", type=int, default=200, help="512x512 instances per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per cell (the best counts)")
    parser.add_argument("--short-associations", type=int, default=5000, help="0: skip the memory measurement")
    args = parser.parse_args()
    if os.environ.get(IN_NAMESPACE) != "1":
        if shutil.which("unshare") is None or shutil.which("storescp") is None:
            sys.exit("needs unshare (root) and DCMTK")
        env = {**os.environ, IN_NAMESPACE: "1"}
        sys.exit(subprocess.call(["unshare", "-n", sys.executable, __file__, *sys.argv[1:]], env=env))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="radtriage-bench-") as tmp:
        work = Path(tmp)
        sets = {
            f"CXR 2500x2000 x{args.cxr}": make_instances(work / "cxr", args.cxr, 2500, 2000),
            f"512x512 x{args.small}": make_instances(work / "small", args.small, 512, 512),
        }
        print("radtriage: whole daemon, fsync of file and folder, SQLite row (synchronous=FULL), "
              f"{listener_processes_label()} listener processes; storescp --fork: no fsync, no database\n")
        throughput(work, sets, args.repeats)
        if args.short_associations:
            memory(work, args.short_associations)


if __name__ == "__main__":
    main()

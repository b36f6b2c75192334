"""Cost of storing one received instance durably: ``O_DIRECT`` against a page-cache write.

Writes radiograph-sized files with ``dicom.storage.store_bytes`` (file meta plus dataset as
two pieces, BLAKE3, fsync of file and folder, rename) both ways, alternating rounds in one
process, in the data folder's filesystem, and prints CPU and wall milliseconds per file and
the ratio. CPU is the writing thread's, which includes the kernel's work on its behalf.

Files are kept until the end, as a listener keeps what it stores: a page-cache write then
takes new pages for every file, as it does in a running daemon. (Deleting them between
rounds would hand the next round pages just freed, which are much cheaper on a virtual
machine than memory the guest has not touched lately.)

    python benchmarks/store.py [--folder DIR] [--files 20] [--mb 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicom import direct_write  # noqa: E402
from dicom.storage import store_bytes  # noqa: E402


def run(folder: Path, files: int, size: int, *, direct: bool) -> tuple[float, float]:
    """(CPU ms, wall ms) per file; every file has new bytes, as every instance does."""
    saved = direct_write._O_DIRECT
    direct_write._O_DIRECT = saved if direct else 0
    head, body = b"\x00" * 128 + b"DICM" + b"\x00" * 200, bytearray(os.urandom(size))
    cpu = wall = 0.0
    try:
        for n in range(files):
            body[:8] = n.to_bytes(8, "little")
            started_cpu, started = time.thread_time(), time.perf_counter()
            store_bytes(folder, (head, memoryview(body)))
            cpu += time.thread_time() - started_cpu
            wall += time.perf_counter() - started
    finally:
        direct_write._O_DIRECT = saved
    return cpu * 1000 / files, wall * 1000 / files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("."), help="where to write (the data folder's filesystem)")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--mb", type=float, default=10.0, help="file size in MB (a CXR is about 10)")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    with tempfile.TemporaryDirectory(prefix="radtriage-store-", dir=args.folder) as tmp:
        print(f"{args.files} files of {args.mb:g} MB per round, fsync of file and folder, in {args.folder.resolve()}")
        print(f"{'round':<16}{'CPU ms/file':>13}{'wall ms/file':>14}")
        totals = {False: [0.0, 0.0], True: [0.0, 0.0]}
        for n, direct in enumerate((False, True, False, True)):
            cpu, wall = run(Path(tmp) / str(n), args.files, size, direct=direct)
            totals[direct][0] += cpu
            totals[direct][1] += wall
            print(f"{n + 1}: {'O_DIRECT' if direct else 'page cache':<13}{cpu:>13.2f}{wall:>14.2f}", flush=True)
    (cached_cpu, cached_wall), (direct_cpu, direct_wall) = totals[False], totals[True]
    print(f"O_DIRECT / page cache: CPU {direct_cpu / cached_cpu:.2f}x, wall {direct_wall / cached_wall:.2f}x")


if __name__ == "__main__":
    main()

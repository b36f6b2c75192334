"""Cost of deciding duplicates by content at intake, against taking in a new instance.

One process, one SQLite database, full-size radiographs (12-bit DX, 2500 x 2000 by default,
~10 MB): each round takes in a new instance (the baseline: store, fsync, row), then the same
dataset again under another file meta (a duplicate by dataset hash, nothing stored), then
the same image re-encoded as RLE lossless (a duplicate by image hash: both copies decoded
the first time, the held one's hash kept for the next). Prints milliseconds per instance
(min / median over the rounds) and each figure as a ratio to the baseline measured in the
same rounds, and the dataset hash alone.

    python benchmarks/duplicates.py [--rounds 5] [--rows 2500] [--cols 2000]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.filewriter import dcmwrite
from pydicom.uid import RLELossless

from db.session import make_engine, make_session_factory, migrate
from dicom.acceptance import identify, split_part10
from dicom.identity import dataset_hash
from dicom.intake import take_in
from tests.factories import chest_radiograph


def encoded(ds) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return (time.perf_counter() - started) * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--cols", type=int, default=2000)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {"new instance (baseline)": [], "dataset hash alone": [],
                                       "same dataset, other file meta": [], "same image, RLE lossless": []}
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        engine = make_engine(f"sqlite:///{data_dir / 'radtriage.sqlite3'}")
        migrate(engine)
        sessions = make_session_factory(engine)
        for n in range(args.rounds):
            ds = chest_radiograph(args.rows, args.cols, seed=n)
            raw = encoded(ds)
            header = identify(ds, str(ds.file_meta.TransferSyntaxUID))
            ms, first = timed(take_in, raw, header, data_dir=data_dir, sessions=sessions)
            figures["new instance (baseline)"].append(ms)
            body = split_part10(raw)[1]
            figures["dataset hash alone"].append(timed(dataset_hash, body)[0])
            ds.file_meta.ImplementationVersionName = "OTHER_SENDER"
            other_meta = encoded(ds)
            ms, again = timed(take_in, other_meta, header, data_dir=data_dir, sessions=sessions)
            figures["same dataset, other file meta"].append(ms)
            ds.compress(RLELossless, generate_instance_uid=False)
            rle = encoded(ds)
            rle_header = identify(ds, str(RLELossless))
            ms, transcoded = timed(take_in, rle, rle_header, data_dir=data_dir, sessions=sessions)
            figures["same image, RLE lossless"].append(ms)
            assert (first.outcome.value, again.outcome.value, transcoded.outcome.value) == (
                "stored", "duplicate", "duplicate")
        engine.dispose()
    baseline = statistics.median(figures["new instance (baseline)"])
    print(f"{args.rows}x{args.cols} 16-bit, {args.rounds} rounds; ms per instance, min / median, ratio of medians")
    for label, values in figures.items():
        median = statistics.median(values)
        print(f"  {label:32s} {min(values):8.1f} / {median:8.1f} ms   x{median / baseline:.2f}")


if __name__ == "__main__":
    main()

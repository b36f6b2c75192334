"""Triage CPU per study, step by step, today's preprocessing against the one it replaced.

    python benchmarks/scoring.py [--repeat 5] [--sizes 2500x2000,512x512]
    python benchmarks/scoring.py --samples        # preprocessing alone on the shared samples
    python benchmarks/scoring.py --full           # EfficientNet-L2 at 1280x1280 on the CPU
    python benchmarks/scoring.py --full --gpu     # the same on the GPU

The default run triages two-view studies (PA + lateral, 12-bit, rescale and window as DX
headers carry them) through the worker's own task (``worker.tasks.triage.run_triage``: claim,
read, decode, window/convert, PNG, stand-in CXR Foundation, heads, DB write on SQLite) at
each size, alternating the baseline (per-pixel float chain + Pillow PNG level 1, the
preprocessing triage used before; kept here only as the baseline) with the current one, and
prints CPU ms per step (min/median over the repeats) and the ratio. The stand-in models are
tiny, so "model" is TensorFlow's call overhead plus its PNG decode and resize, not ELIXR-C;
--full times an EfficientNet-L2-sized network at 1280×1280 as a *proxy* for ELIXR-C.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import pydicom
from PIL import Image

from dicom import pixels
from dicom.errors import UnscorableImage

SAMPLES = ROOT.parent / "shared" / "dicom_samples"
STEPS = ("DB claim", "read file", "decode pixels", "window/convert", "encode PNG", "model", "heads + policy",
         "DB write", "other")


# --------------------------------------------------------------------------- the baseline


def pillow_png_level1(arr: np.ndarray) -> bytes:
    """The PNG encoder triage used before (Pillow, zlib level 1): the baseline, nothing else."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr, dtype=np.dtype("=u2"))).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# Each variant: (window/convert, encode). The baseline ran Google's chain on every pixel in
# float64 (pixels._map_values on the image); the current one maps the image through a table.
VARIANTS: dict[str, tuple[Callable, Callable]] = {
    "baseline": (pixels._map_values, pillow_png_level1),
    "current": (pixels._convert, pixels.encode_png16),
}


# --------------------------------------------------------------------------- studies


class StepClock:
    """CPU seconds (all threads of this process) per step, for one study at a time."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)

    def wrap(self, step: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[step] += time.process_time() - started

        return timed


def instrument(ctx, clock: StepClock):
    """Wrap the functions run_triage calls so each step's CPU lands in ``clock``; returns a
    function that picks the variant for the next studies."""
    import db.triage
    import scoring.urgency
    import worker.tasks.triage as task
    from scoring.embedding import ImageEmbedding

    db.triage.claim = clock.wrap("DB claim", db.triage.claim)
    db.triage.record_result = clock.wrap("DB write", db.triage.record_result)
    ImageEmbedding.to_bytes = clock.wrap("DB write", ImageEmbedding.to_bytes)  # the stored form
    scoring.urgency.assess = clock.wrap("heads + policy", scoring.urgency.assess)
    task.pydicom = type("pydicom", (), {"dcmread": staticmethod(clock.wrap("read file", pydicom.dcmread))})
    triager, reason = ctx.triager()
    if triager is None:
        sys.exit(f"the stand-in did not load: {reason}")
    triager.backend.embed_image = clock.wrap("model", triager.backend.embed_image)
    triager.score_embedding = clock.wrap("heads + policy", triager.score_embedding)
    decode = clock.wrap("decode pixels", pixels._decoded)

    def use(variant: str) -> None:
        convert, encode = (clock.wrap(step, fn) for step, fn in zip(("window/convert", "encode PNG"),
                                                                     VARIANTS[variant], strict=True))
        task.to_model_png = lambda ds: encode(convert(decode(ds), ds))

    return use


def bench_steps(sizes: list[tuple[int, int]], repeat: int) -> dict:
    """Per size and variant: {step: [CPU seconds per study]}; prints the table."""
    try:
        import tensorflow  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        sys.exit("tensorflow/transformers not installed: pip install 'radtriage[ml]'")
    from tests.factories import chest_radiograph
    from tests.integration.worker_support import complete_all, ingest, worker_context
    from tests.standins import build_cxr_foundation_standin
    from worker.tasks.triage import run_triage

    results: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ctx = worker_context(folder, build_cxr_foundation_standin(folder / "model"))
        clock = StepClock()
        use = instrument(ctx, clock)
        for rows, cols in sizes:
            studies = []
            for i in range(2 * repeat + 2):  # +2: one warm-up study per variant
                pa = chest_radiograph(rows, cols, seed=2 * i, view="PA")
                lateral = chest_radiograph(rows, cols, seed=2 * i + 1, view="LL", study_uid=str(pa.StudyInstanceUID))
                studies.append(ingest(ctx, pa).study_id)
                ingest(ctx, lateral)
            complete_all(ctx)
            per: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in VARIANTS}
            for i, study_id in enumerate(studies):
                variant = ("baseline", "current")[i % 2]  # alternate, so both share the machine's noise
                use(variant)
                clock.cpu.clear()
                started_cpu, started = time.process_time(), time.perf_counter()
                assert run_triage(ctx, study_id, 1) == "triaged"
                total_cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
                if i < 2:
                    continue  # the first call per variant traces the graphs and fills caches
                for step in STEPS[:-1]:
                    per[variant][step].append(clock.cpu.get(step, 0.0))
                per[variant]["other"].append(total_cpu - sum(clock.cpu.values()))
                per[variant]["whole path (CPU)"].append(total_cpu)
                per[variant]["whole path (wall)"].append(wall)
            results[(rows, cols)] = per
            print_table(f"{rows}x{cols}", per, repeat)
    return results


def print_table(size: str, per: dict, repeat: int) -> None:
    print(f"\n{size}, two-view study (PA scored), {repeat} studies per variant, CPU ms per study: min / median")
    print(f"  {'step':22} {'baseline':>17} {'current':>17} {'ratio (median)':>15}")
    for step in (*STEPS, "whole path (CPU)", "whole path (wall)"):
        base, cur = per["baseline"][step], per["current"][step]
        ratio = statistics.median(cur) / statistics.median(base) if statistics.median(base) > 1e-4 else float("nan")
        print(f"  {step:22} {_ms(base):>17} {_ms(cur):>17} {ratio:>14.2f}x")


def _ms(values: list[float]) -> str:
    return f"{1000 * min(values):7.1f} / {1000 * statistics.median(values):7.1f}"


# --------------------------------------------------------------------------- shared samples


def sample_bytes() -> dict[str, bytes]:
    """Every chest/derived sample that decodes, as raw file bytes (reading from disk is not timed)."""
    files = sorted((SAMPLES / "chest").glob("*.dcm")) + sorted((SAMPLES / "derived").glob("*.dcm"))
    good = {}
    for path in files:
        data = path.read_bytes()
        try:
            pixels.to_model_png(pydicom.dcmread(BytesIO(data), force=True))
        except UnscorableImage:
            continue
        good[path.name] = data
    return good


def bench_samples(samples: dict[str, bytes], repeat: int) -> None:
    """Preprocessing alone (DICOM bytes → PNG) on the mixed samples, baseline against current."""
    sides = [pydicom.dcmread(BytesIO(d), force=True, stop_before_pixels=True) for d in samples.values()]
    sizes = ", ".join(sorted({f"{int(s.Rows)}x{int(s.Columns)}" for s in sides}))
    print(f"samples: {len(samples)} decodable files ({sizes}); CPU ms per pass over all of them: min / median")
    passes: dict[str, dict[str, list[float]]] = {v: defaultdict(list) for v in VARIANTS}
    for _ in range(repeat):
        for variant, (convert, encode) in VARIANTS.items():
            clock = StepClock()
            for data in samples.values():
                ds = clock.wrap("read file", pydicom.dcmread)(BytesIO(data), force=True)
                arr = clock.wrap("decode pixels", pixels._decoded)(ds)
                clock.wrap("encode PNG", encode)(clock.wrap("window/convert", convert)(arr, ds))
            for step in ("read file", "decode pixels", "window/convert", "encode PNG"):
                passes[variant][step].append(clock.cpu[step])
            passes[variant]["preprocessing"].append(sum(clock.cpu.values()))
    print(f"  {'step':22} {'baseline':>17} {'current':>17} {'ratio (median)':>15}")
    for step in ("read file", "decode pixels", "window/convert", "encode PNG", "preprocessing"):
        base, cur = passes["baseline"][step], passes["current"][step]
        print(f"  {step:22} {_ms(base):>17} {_ms(cur):>17} "
              f"{statistics.median(cur) / statistics.median(base):>14.2f}x")


def bench_full(iterations: int, *, cpu: bool) -> dict | None:
    """ELIXR-C's cost with an EfficientNet-L2-sized encoder at 1280×1280 (random weights, no download).

    On the GPU when TensorFlow sees one (``cpu=False``), else on the CPU. Prints seconds per
    chest image at batch 1 and the process's peak resident memory.
    """
    try:
        import tensorflow as tf
    except ImportError:
        print("  SKIPPED: tensorflow is not installed")
        return None
    gpus = [] if cpu else tf.config.list_physical_devices("GPU")
    device = gpus[0].name if gpus else "CPU"
    print(f"\nELIXR-C stand-in (EfficientNet-L2-sized, 1280x1280, batch 1, TensorFlow, random weights) on {device}:")
    from keras.src.applications.efficientnet import EfficientNet

    # EfficientNet-L2 (Noisy Student): width 4.3, depth 5.3; ELIXR-C runs it at 1280×1280 (the model card).
    with tf.device("/GPU:0" if gpus else "/CPU:0"):
        net = EfficientNet(4.3, 5.3, 800, dropout_rate=0.5, name="efficientnet_l2_proxy", include_top=False,
                           weights=None, input_shape=(1280, 1280, 3), pooling=None)
        forward = tf.function(lambda x: net(x, training=False), jit_compile=False)
        image = tf.random.uniform((1, 1280, 1280, 3))
        warm = 3 if gpus else 1
        for _ in range(warm):
            forward(image).numpy()  # warm-up: tracing and autotuning
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            forward(image).numpy()
            times.append(time.perf_counter() - t)
    seconds = float(np.median(times))
    peak = _peak_rss_gib()
    print(f"  parameters: {net.count_params() / 1e6:.0f} M; output {tuple(net.output_shape)}")
    print(f"  PROXY, not ELIXR-C: median {seconds:.2f} s/image = {1 / seconds:.2f} images/s = "
          f"{3600 / seconds:.0f} images/hour at batch 1; peak resident memory {peak:.1f} GiB")
    return {"device": device, "seconds_per_image": seconds, "peak_rss_gib": peak}


def _peak_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="studies per variant and size (passes with --samples)")
    parser.add_argument("--sizes", default="2500x2000,512x512", help="image sizes ROWSxCOLUMNS, comma-separated")
    parser.add_argument("--samples", action="store_true", help="preprocessing alone on the shared DICOM samples")
    parser.add_argument("--full", action="store_true",
                        help="only the full-size ELIXR-C stand-in (EfficientNet-L2 at 1280x1280), on the CPU "
                             "unless --gpu; seconds per chest image and peak memory")
    parser.add_argument("--gpu", action="store_true", help="with --full: on the GPU when TensorFlow sees one")
    parser.add_argument("--full-iterations", type=int, default=2, help="timed images in --full mode")
    args = parser.parse_args()
    if args.full:
        bench_full(args.full_iterations, cpu=not args.gpu)
        return
    if args.samples:
        if not SAMPLES.is_dir():
            sys.exit(f"samples not found at {SAMPLES}")
        bench_samples(sample_bytes(), args.repeat)
        return
    sizes = [tuple(int(n) for n in size.lower().split("x")) for size in args.sizes.split(",")]
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    bench_steps(sizes, args.repeat)
    print("\n(GPU figure for the ELIXR-C stand-in: python benchmarks/scoring.py --full --gpu)")


if __name__ == "__main__":
    main()

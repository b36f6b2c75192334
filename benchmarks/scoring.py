"""Scoring throughput on this machine: preprocessing alone, the whole scoring path with the
stand-in CXR Foundation, the share of time per step; or, with --full, an ELIXR-C-sized proxy.

    python benchmarks/scoring.py [--repeat 3]
    python benchmarks/scoring.py --full            # EfficientNet-L2 at 1280x1280 on the CPU
    python benchmarks/scoring.py --full --gpu      # the same on the GPU

Numbers are images/s on the CPU this runs on. The stand-in models are tiny, so the
"whole path" number measures our code and TensorFlow's call overhead, not the real model;
--full times an EfficientNet-L2-sized network at 1280×1280 in TensorFlow as a
*proxy* for ELIXR-C (random weights, same family and input size; not the real model).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from io import BytesIO
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from dicom import pixels  # noqa: E402
from dicom.errors import UnscorableImage  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "dicom_samples"


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


def timed_chain(data: bytes, clock: dict[str, float]) -> bytes:
    """dicom.pixels.to_model_png step by step, adding each step's seconds to ``clock``."""
    t = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal t
        now = time.perf_counter()
        clock[step] += now - t
        t = now

    ds = pydicom.dcmread(BytesIO(data), force=True)
    lap("parse DICOM")
    pixels._check_header(ds)
    arr = pixels._native(pixels._decode(pixels._with_transfer_syntax(ds)))
    lap("decode pixels")
    arr = pixels._apply_modality(arr, ds)
    lap("modality LUT")
    windowed = pixels._maybe_window(arr, ds)
    arr = windowed if windowed is not None else arr
    lap("VOI window")
    if ds.PhotometricInterpretation == "MONOCHROME1":
        arr = pixels.invert_monochrome1(arr)
    arr = pixels.shift_to_unsigned(arr)
    lap("invert + shift")
    arr = pixels.rescale_dynamic_range(arr)
    lap("rescale range")
    png = pixels.encode_png16(arr)
    lap("encode PNG16")
    return png


def report(title: str, clock: dict[str, float], images: int) -> float:
    total = sum(clock.values())
    print(f"\n{title}: {images} images in {total:.2f} s = {images / total:.1f} images/s")
    for step, seconds in clock.items():
        print(f"  {step:28} {1000 * seconds / images:8.2f} ms/image  {100 * seconds / total:5.1f} %")
    return images / total


def bench_preprocessing(samples: dict[str, bytes], repeat: int) -> float:
    clock: dict[str, float] = defaultdict(float)
    for _ in range(repeat):
        for data in samples.values():
            timed_chain(data, clock)
    sides = [pydicom.dcmread(BytesIO(d), force=True, stop_before_pixels=True) for d in samples.values()]
    sizes = ", ".join(sorted({f"{int(s.Rows)}x{int(s.Columns)}" for s in sides}))
    print(f"samples: {len(samples)} decodable files ({sizes})")
    return report("preprocessing alone (DICOM bytes → 16-bit PNG)", clock, repeat * len(samples))


def bench_whole_path(samples: dict[str, bytes], repeat: int) -> float | None:
    try:
        import tensorflow  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        print("\nwhole scoring path: SKIPPED (tensorflow/transformers not installed: pip install 'radtriage[ml]')")
        return None
    from scoring.backends import EmbedderConfig
    from scoring.heads import highest
    from scoring.triage import Triager
    from scoring.urgency import assess, load_policy
    from tests.standins import build_cxr_foundation_standin

    with tempfile.TemporaryDirectory() as folder:
        model_dir = build_cxr_foundation_standin(Path(folder))
        policy = load_policy()
        started = time.perf_counter()
        triager = Triager.load(EmbedderConfig(cxr_foundation_dir=model_dir), policy)
        load_seconds = time.perf_counter() - started
        backend = triager.backend
        clock: dict[str, float] = defaultdict(float)
        for name in ("_elixr_c", "_qformer"):  # time the two model calls separately
            signature = getattr(backend, name)

            def timed(*args, _signature=signature, _name=name, **kwargs):
                t = time.perf_counter()
                out = _signature(*args, **kwargs)
                clock["ELIXR-C call" if _name == "_elixr_c" else "Q-Former call"] += time.perf_counter() - t
                return out

            setattr(backend, name, timed)
        triager.score_png(pixels.to_model_png(pydicom.dcmread(BytesIO(next(iter(samples.values()))), force=True)))
        clock.clear()  # the first call traces the graphs: not steady state
        for _ in range(repeat):
            for data in samples.values():
                t = time.perf_counter()
                png = pixels.to_model_png(pydicom.dcmread(BytesIO(data), force=True))
                clock["preprocessing"] += time.perf_counter() - t
                t = time.perf_counter()
                embedding = backend.embed_image(png)
                clock["embed (incl. model calls)"] += time.perf_counter() - t
                t = time.perf_counter()
                scores = triager.score_embedding(embedding)
                assess(highest([scores]), "ROUTINE", policy)
                clock["heads + policy"] += time.perf_counter() - t
                t = time.perf_counter()
                embedding.to_bytes()
                clock["serialise embedding"] += time.perf_counter() - t
        models = clock.pop("ELIXR-C call") + clock.pop("Q-Former call")
        clock["embed (our code, no model)"] = clock.pop("embed (incl. model calls)") - models
        clock["stand-in model calls"] = models
        print(f"\nstand-in CXR Foundation loaded and {len(triager.prompt_embeddings)} prompt pairs embedded in {load_seconds:.1f} s")
        return report("whole scoring path with the stand-in (DICOM bytes → priority)", clock, repeat * len(samples))


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
    parser.add_argument("--repeat", type=int, default=3, help="passes over the samples")
    parser.add_argument("--full", action="store_true",
                        help="only the full-size ELIXR-C stand-in (EfficientNet-L2 at 1280x1280), on the CPU "
                             "unless --gpu; seconds per chest image and peak memory")
    parser.add_argument("--gpu", action="store_true", help="with --full: on the GPU when TensorFlow sees one")
    parser.add_argument("--full-iterations", type=int, default=2, help="timed images in --full mode")
    args = parser.parse_args()
    if args.full:
        bench_full(args.full_iterations, cpu=not args.gpu)
        return
    if not SAMPLES.is_dir():
        sys.exit(f"samples not found at {SAMPLES}")
    samples = sample_bytes()
    pre = bench_preprocessing(samples, args.repeat)
    whole = bench_whole_path(samples, args.repeat)
    if whole:
        print(f"\nratio: the whole stand-in path runs at {whole / pre:.2f}× the speed of preprocessing alone")
    print("\n(GPU figure for the ELIXR-C stand-in: python benchmarks/scoring.py --full --gpu)")


if __name__ == "__main__":
    main()

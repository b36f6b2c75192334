"""Draft throughput: a randomly initialised MedGemma 4B (real configuration) through MedGemmaDrafter.

Measures drafts/s, generated tokens/s and peak GPU memory at several batch sizes, each
draft exactly ``--new-tokens`` long (min = max new tokens: random weights seldom stop),
with one 896×896 image per draft. Goal: ≥ 10 drafts/s on one H200 at 200 tokens.

    python benchmarks/draft_gpu.py --full --batches 1,8,32 --new-tokens 200   # full size, bf16, GPU
    python benchmarks/draft_gpu.py --full --device cpu --batches 1 --new-tokens 16 --repeats 1
                                                   # full size, bf16, on the CPU (tokens/s, peak memory)
    python benchmarks/draft_gpu.py --tiny          # tiny config, runs anywhere (CPU: float32)

The model is built directly on the device with the real Gemma 3 classes, not loaded: the weights are
gated, and throughput does not depend on their values. Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python benchmarks/...` from the root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true",
                      help="MedGemma 4B's real configuration in bf16 (the default); allowed on the CPU too")
    size.add_argument("--tiny", action="store_true", help="tiny 2-layer config at 224 px (a smoke run)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    parser.add_argument("--new-tokens", type=int, default=200, help="exact generated tokens per draft")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per batch size (after one warm-up)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def build(tiny: bool, device: str, new_tokens: int, bf16: bool = False):
    """A MedGemmaDrafter around a random model built in place on ``device``."""
    import torch
    from transformers import Gemma3ForConditionalGeneration

    from scoring.medgemma import MedGemmaDrafter
    from tests.standins_medgemma import (
        build_processor,
        full_config,
        reinit_projector,
        tiny_config,
    )

    if tiny:
        processor = build_processor(image_size=224, mm_tokens_per_image=16)
        config = tiny_config(processor)
    else:
        processor = build_processor(image_size=896, mm_tokens_per_image=256, real_ids=True)
        config = full_config()
    dtype = torch.float32 if tiny and device == "cpu" and not bf16 else torch.bfloat16
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # allocate in bf16 directly: 4.3 B params in fp32 = 17 GB
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    reinit_projector(model)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    drafter = MedGemmaDrafter(
        model, processor, model_id="random-medgemma-4b" if not tiny else "random-tiny-gemma3",
        max_new_tokens=new_tokens, min_new_tokens=new_tokens,
    )
    return drafter, params


def one_image(side: int):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8)
    return Image.fromarray(pixels).convert("RGB")


def run(drafter, image, batch: int, new_tokens: int, repeats: int, cuda: bool) -> dict:
    """One warm-up and ``repeats`` timed ``draft_batch`` calls at one batch size."""
    import torch

    images = [image] * batch
    drafter.draft_batch(images)  # warm-up: kernels, allocator, caches
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        drafts = drafter.draft_batch(images)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        if any(d.batch_size != batch for d in drafts):  # the drafter halved it after an OOM
            raise torch.cuda.OutOfMemoryError(f"batch {batch} was split to fit in memory")
        lengths = {d.new_tokens for d in drafts}
        if lengths != {new_tokens}:
            raise RuntimeError(f"expected exactly {new_tokens} new tokens per draft, got {sorted(lengths)}")
    seconds = min(times)
    return {
        "batch": batch,
        "seconds": round(seconds, 3),
        "drafts_per_s": round(batch / seconds, 2),
        "tokens_per_s": round(batch * new_tokens / seconds, 1),
        "prompt_tokens": drafts[0].prompt_tokens,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30 if cuda else _peak_rss_gib(), 2),
    }


def _peak_rss_gib() -> float:
    """The process's peak resident memory (the CPU figure; GPU runs report device memory)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    if not args.tiny and not cuda and not args.full:
        print("no GPU: pass --full --device cpu for the full-size model on the CPU (slow), or --tiny",
              file=sys.stderr)
        return 2
    built = time.perf_counter()
    drafter, params = build(args.tiny, device, args.new_tokens)
    build_s = time.perf_counter() - built
    side = drafter.processor.image_processor.size["height"]
    image = one_image(side)
    header = {
        "config": "tiny" if args.tiny else "medgemma-4b (random weights)",
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(drafter.model.dtype).removeprefix("torch."),
        "params_m": round(params / 1e6, 2),
        "image": f"{side}x{side}",
        "new_tokens": args.new_tokens,
        "build_s": round(build_s, 1),
        "torch": torch.__version__,
    }
    print(json.dumps(header))
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        try:
            results.append(run(drafter, image, batch, args.new_tokens, args.repeats, cuda))
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch}: out of memory", flush=True)
            torch.cuda.empty_cache()
            continue
        row = results[-1]
        base = results[0]["drafts_per_s"]
        print(
            f"batch {row['batch']:>3}: {row['seconds']:>8.3f} s  {row['drafts_per_s']:>8.2f} drafts/s  "
            f"{row['tokens_per_s']:>9.1f} tok/s  x{row['drafts_per_s'] / base:>5.2f} vs batch {results[0]['batch']}  "
            f"peak {row['peak_gib']} GiB  prompt {row['prompt_tokens']} tok",
            flush=True,
        )
    best = max(results, key=lambda r: r["drafts_per_s"], default=None)
    if best is not None and args.tiny:
        print(f"best: {best['drafts_per_s']} drafts/s at batch {best['batch']} (tiny config: no goal applies)")
    elif best is not None and not cuda:
        print(f"CPU: {best['tokens_per_s']} generated tok/s at batch {best['batch']} (prefill included); "
              f"{best['seconds']:.1f} s for {best['batch']} draft(s) of {args.new_tokens} tokens incl. the "
              f"{best['prompt_tokens']}-token image prompt; "
              f"peak resident memory {best['peak_gib']} GiB")
    elif best is not None:
        verdict = "met" if best["drafts_per_s"] >= 10 else "NOT met"
        print(f"best: {best['drafts_per_s']} drafts/s at batch {best['batch']}; goal >= 10 drafts/s {verdict}")
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training step time: DiT-T/4 (one pass) vs MDTv2-T/4 (unmasked + masked pass) on this machine's CPU.

Prints seconds per optimizer step and the MDTv2 / DiT ratio (one MDT step costs about 1.7-1.9x the
FLOPs of a DiT step at XL/2; docs/model_sizes.md). With --gpu (CUDA only): MDTv2-S/2 on smileys
(256 tokens) for 50 steps in fp32, bf16 and bf16 + torch.compile, with the peak GPU memory of each.

    python benchmarks/bench_train.py [--steps 20] [--batch-size 32] [--threads N]
    python benchmarks/bench_train.py --gpu [--steps 50] [--batch-size 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from mdt_teach.recipe import TrainConfig
from mdt_teach.train import Trainer


def _sync(trainer) -> None:
    """Wait for the GPU so the clock measures finished work."""
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)


def seconds_per_step(model: str, steps: int, batch_size: int, warmup: int = 3, **cfg) -> tuple[float, int]:
    """(mean seconds of `steps` optimizer steps after `warmup` steps, peak CUDA bytes or 0); no IO."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(model=model, batch_size=batch_size, steps=steps + warmup, out=tmp,
                                      progress=False, eval_samples=0, grid_samples=0, **cfg),
                          log=lambda *a, **k: None)
        for _ in range(warmup):
            trainer.train_step()
        _sync(trainer)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        _sync(trainer)
        peak = torch.cuda.max_memory_allocated(trainer.device) if trainer.device.type == "cuda" else 0
        return (time.perf_counter() - start) / steps, peak


def cpu(args) -> None:
    """DiT-T/4 vs MDTv2-T/4 in the tiny profile."""
    times = {m: seconds_per_step(m, args.steps, args.batch_size, profile="tiny", threads=args.threads)[0]
             for m in ("DiT-T/4", "MDTv2-T/4")}
    for model, s in times.items():
        print(f"{model:<10} {s:.3f} s/step  ({args.batch_size / s:.0f} images/s)")
    print(f"ratio MDTv2-T/4 / DiT-T/4 = {times['MDTv2-T/4'] / times['DiT-T/4']:.2f}x per step")


def gpu(args) -> None:
    """MDTv2-S/2 in the small profile: fp32, bf16, bf16 + compile."""
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    for dtype, compiled in (("float32", False), ("bfloat16", False), ("bfloat16", True)):
        s, peak = seconds_per_step("MDTv2-S/2", args.steps, args.batch_size, warmup=10 if compiled else 3,
                                   profile="small", dtype=dtype, compile=compiled)
        print(f"MDTv2-S/2 {dtype:<9}{' + compile' if compiled else '          '}  {s * 1e3:7.1f} ms/step  "
              f"peak {peak / 2**30:5.2f} GiB  (batch {args.batch_size})")


def main() -> None:
    """Parse the flags and run the CPU or the GPU comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20 CPU, 50 GPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default 32 CPU, 64 GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the profile's)")
    parser.add_argument("--gpu", action="store_true", help="MDTv2-S/2 fp32 / bf16 / bf16+compile on CUDA")
    args = parser.parse_args()
    args.steps = args.steps or (50 if args.gpu else 20)
    args.batch_size = args.batch_size or (64 if args.gpu else 32)
    (gpu if args.gpu else cpu)(args)


if __name__ == "__main__":
    main()

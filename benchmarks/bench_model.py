"""Forward and forward+backward time of MDTv2 / MDT vs DiT on the CPU, masked vs unmasked pass, as ratios.

    python benchmarks/bench_model.py [--threads 2] [--reps 5] [--sizes T S]

Times are medians over `reps` runs after one warm-up. "train step" is what the trainer does per
step: one fwd+bwd for DiT, an unmasked plus a masked fwd+bwd for MDT/MDTv2 (as the official
`masked_diffusion/train_util.py: TrainLoop.forward_backward` does). MDTv2's masked ratio is drawn per
call from U[0.3, 0.5), as in training.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from mdt_teach.models import build_model
from mdt_teach.layers import RelativePositionBias

BATCH = {"T": 32, "S": 4}          # CPU-sized batches: tiny (64 tokens) and S/2 (256 tokens)


def median_time(fn, reps: int) -> float:
    """Median wall time of fn() over reps runs, after one warm-up run."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inputs(model, batch: int):
    """A random batch the model accepts."""
    x = torch.randn(batch, model.in_channels, model.input_size, model.input_size)
    return x, torch.randint(0, 1000, (batch,)), torch.randint(0, model.num_classes, (batch,))


def measure(name: str, batch: int, reps: int) -> dict[str, float]:
    """Seconds for forward / fwd+bwd, unmasked and masked (MDT only), and one training step."""
    model = build_model(name).train()
    x, t, y = inputs(model, batch)

    def forward(mask):
        with torch.no_grad():
            model(x, t, y, enable_mask=mask)

    def fwd_bwd(mask):
        model.zero_grad(set_to_none=True)
        model(x, t, y, enable_mask=mask).square().mean().backward()

    res = {"fwd": median_time(lambda: forward(False), reps), "fwd+bwd": median_time(lambda: fwd_bwd(False), reps)}
    if model.is_mdt:
        res["fwd masked"] = median_time(lambda: forward(True), reps)
        res["fwd+bwd masked"] = median_time(lambda: fwd_bwd(True), reps)
    res["train step"] = res["fwd+bwd"] + res.get("fwd+bwd masked", 0.0)
    return res


def bench_bias(reps: int, batch: int = 8, keep: int = 179) -> tuple[float, float]:
    """Kept×kept bias: our index-then-lookup vs the official repeat-over-batch-then-gather (S/2 grid)."""
    rel = RelativePositionBias(16, 6)
    ids_keep = torch.stack([torch.randperm(256)[:keep] for _ in range(batch)])   # (B, K)

    def official_style():
        full = rel().unsqueeze(0).repeat(batch, 1, 1, 1)                          # (B, H, N, N)
        rows = ids_keep[:, None, :, None].expand(-1, full.shape[1], -1, full.shape[-1])
        full = torch.gather(full, 2, rows)                                        # (B, H, K, N)
        cols = ids_keep[:, None, None, :].expand(-1, full.shape[1], keep, -1)
        return torch.gather(full, 3, cols)                                        # (B, H, K, K)

    assert torch.equal(official_style(), rel(ids_keep))
    with torch.no_grad():
        return median_time(lambda: rel(ids_keep), reps), median_time(official_style, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--sizes", nargs="+", default=["T", "S"], choices=["T", "S"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    for size in args.sizes:
        patch = 4 if size == "T" else 2
        batch = BATCH[size]
        runs = {fam: measure(f"{fam}-{size}/{patch}", batch, args.reps) for fam in ("DiT", "MDT", "MDTv2")}
        print(f"\n== {size}/{patch}, batch {batch} ==")
        for fam, res in runs.items():
            print(f"{fam:6s} " + "  ".join(f"{k} {v * 1e3:7.1f} ms" for k, v in res.items()))
        dit = runs["DiT"]
        for fam in ("MDT", "MDTv2"):
            r = runs[fam]
            print(f"{fam}/DiT: fwd {r['fwd'] / dit['fwd']:.2f}x  fwd+bwd {r['fwd+bwd'] / dit['fwd+bwd']:.2f}x  "
                  f"train step {r['train step'] / dit['train step']:.2f}x  |  masked/unmasked: "
                  f"fwd {r['fwd masked'] / r['fwd']:.2f}x  fwd+bwd {r['fwd+bwd masked'] / r['fwd+bwd']:.2f}x")
    ours, official = bench_bias(args.reps)
    print(f"\nkept×kept relative bias (B=8, K=179, S/2 grid): index-then-lookup {ours * 1e3:.2f} ms, "
          f"official repeat+gather {official * 1e3:.2f} ms ({official / ours:.1f}x)")


if __name__ == "__main__":
    main()

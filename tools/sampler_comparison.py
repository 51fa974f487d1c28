"""Lesson 09's sampler comparison on enough samples to mean something (a 60-second lesson shows only 16).

    python tools/sampler_comparison.py [--n 512] [--out data/sampler_comparison.json]
                                       [--checkpoint data/lesson09_mdtv2_tiny.pt]

Samples the committed lesson 09 checkpoint (MDTv2-T/4) with DDPM-250, DDPM-50, DDIM-50 (ADM's ddim50
spacing) and DDIM-10 from the same starting noise and classes, scores each set with the checker (pair
agreement, the headline, and the two-eyes verdict), and times each sampler per image after a warm-up call
(so the first call's one-off costs are not counted). A rate p of n samples carries a binomial standard
error √(p(1−p)/n), written beside it. The record names the checkpoint's world and the commit it ran at.
`--checkpoint` (relative to the repository root, or absolute) compares the samplers on another lesson
checkpoint: tests/test_tools.py runs a tiny one.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from mdt_teach.checkpoint import write_json
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.lessons import load_lesson_checkpoint
from mdt_teach.metrics import two_eyes
from mdt_teach.sampling import sample
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent

SAMPLERS = [("ddpm", "250"), ("ddpm", "50"), ("ddim", "ddim50"), ("ddim", "ddim10")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--out", default="data/sampler_comparison.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default="data/lesson09_mdtv2_tiny.pt",
                        help="a lesson checkpoint (default: lesson 09's)")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    torch.set_num_threads(args.threads)
    model, info = load_lesson_checkpoint(str(ROOT / args.checkpoint))      # an absolute path stays as it is
    diffusion = GaussianDiffusion()
    y = torch.arange(args.n) % model.num_classes
    z = torch.randn(args.n, model.in_channels, model.input_size, model.input_size,
                    generator=torch.Generator().manual_seed(0))
    rows = []
    for method, steps in SAMPLERS:
        sample(model, z[:2], y[:2], diffusion, steps=steps, method=method)          # warm-up: one-off costs
        began = time.perf_counter()
        x = sample(model, z, y, diffusion, steps=steps, method=method, generator=torch.Generator().manual_seed(1))
        seconds = time.perf_counter() - began
        r = two_eyes(x, y)
        se = lambda p: round(math.sqrt(p * (1 - p) / args.n), 4)  # noqa: E731
        rows.append({"method": method, "steps": steps, "n": args.n, "pair_agreement": round(r.pair_score, 4),
                     "pair_standard_error": se(r.pair_score), "two_eyes": round(r.score, 4),
                     "standard_error": se(r.score), "ms_per_image": round(1000 * seconds / args.n, 2)})
        print(rows[-1], flush=True)
    write_json(Path(args.out), {"checkpoint": args.checkpoint, "model": info["model"], "world": info.get("world"),
                                "threads": args.threads, **made, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Lesson 09, exercise 2 measured: does MDT's late guidance (pow 4) keep more variety than almost constant
guidance (pow 0.01) at w = 4?

    python tools/cfg_pow_variety.py [--n 256] [--out data/cfg_pow_variety.json]
                                    [--checkpoint data/lesson09_mdtv2_tiny.pt]

Samples the committed lesson 09 checkpoint (DDPM-50, classes in turn, one sampling seed) with w = 4 at each
power, and measures variety as the within-class pixel variance: the variance over the samples of one class
at every pixel and channel, averaged, then averaged over the classes. Writes the numbers as JSON.
`--checkpoint` (relative to the repository root, or absolute) samples another lesson checkpoint instead:
tests/test_tools.py runs a tiny one.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mdt_teach.checkpoint import write_json
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.sampling import generate
from lesson_checkpoint_cli import lesson_checkpoint_tool
from provenance import provenance


POWERS = (0.01, 4.0)


def within_class_variance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over classes of the per-pixel variance across that class's samples."""
    return torch.stack([x[y == k].var(dim=0).mean() for k in y.unique()]).mean().item()


def main(argv=None) -> int:
    args, model, info = lesson_checkpoint_tool(__doc__, 256, "data/cfg_pow_variety.json", argv,
                                               extra=lambda p: p.add_argument("--cfg", type=float, default=4.0))
    made = provenance(__file__, argv)
    rows = []
    for power in POWERS:
        x, y = generate(model, args.n, GaussianDiffusion(), steps="50", cfg_scale=args.cfg, scale_pow=power, seed=3)
        rows.append({"scale_pow": power, "within_class_variance": round(within_class_variance(x, y), 5)})
        print(rows[-1], flush=True)
    write_json(Path(args.out), {"checkpoint": args.checkpoint, "world": info.get("world"), "cfg": args.cfg,
                                "n": args.n, "sampler": "ddpm 50", **made, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

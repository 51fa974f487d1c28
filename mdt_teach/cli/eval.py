"""`mdt-teach eval`: the two-eyes score and FD-smileys of a checkpoint's EMA samples (`metrics.score_smileys`).

Samples come from a fixed sampling seed and classes in turn, so two checkpoints are compared on the same noise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import write_json
from ..compat import load_model
from ..metrics import score_smileys
from ..sampling import METHODS, generate, space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach eval`."""
    parser.add_argument("--ckpt", required=True, help="a ckpt_*.pt of a run (its EMA weights are used)")
    parser.add_argument("--data", default="smileys", help="only smileys has a structure checker")
    parser.add_argument("--n", type=int, default=256, help="number of samples (default 256)")
    parser.add_argument("--steps", default="100", help="respacing, e.g. 100, 50 or ddim50 (ADM's DDIM-style "
                                                       "stride) (default 100)")
    parser.add_argument("--method", default="ddpm", choices=METHODS, help="sampler (default ddpm)")
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale (1 = none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Check, load, sample, score, print."""
    if args.data != "smileys":
        raise ValueError(f"eval scores smileys only (two-eyes + FD-smileys), got --data {args.data}; "
                         "for ImageNet use `mdt-teach sample-fid` and `mdt-teach fid`")
    if args.n < 2:
        raise ValueError(f"--n {args.n} is too small for a Fréchet distance; use at least 2 (e.g. 256)")
    if args.json and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder; name a file")
    space_timesteps(1000, args.steps)
    model, info = load_model(args.ckpt, use_ema=not args.no_ema)
    images, labels = generate(model, args.n, steps=args.steps, method=args.method, cfg_scale=args.cfg,
                              seed=args.seed)
    scores = score_smileys(images, labels)
    fd = "n/a" if scores["fd_smileys"] is None else f"{scores['fd_smileys']:.3f}"
    print(f"{info}: two-eyes {scores['two_eyes']:.1%} of {args.n} samples, FD-smileys {fd}")
    print("  funnel: " + ", ".join(f"{k[7:]} {v:.1%}" for k, v in scores.items() if k.startswith("funnel_")))
    if args.json:
        write_json(args.json, {"ckpt": str(args.ckpt), "n": args.n, **scores})
    return 0

"""`mdt-teach eval`: pair agreement, the two-eyes verdict and FD-smileys of a checkpoint's EMA samples
(`metrics.score_smileys`), on the smileys world the checkpoint was trained on.

Samples come from a fixed sampling seed and classes in turn, so two checkpoints are compared on the same noise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoint import write_json
from ..compat import load_model, recorded_world
from ..data import DEFAULT_WORLD, WORLDS
from ..metrics import score_smileys
from ..sampling import METHODS, generate, space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach eval`."""
    parser.add_argument("--ckpt", required=True, help="a ckpt_*.pt of a run (its EMA weights are used)")
    parser.add_argument("--data", default=None, help=f"the smileys world to score against ({', '.join(WORLDS)}; "
                                                      "default: the one the checkpoint was trained on)")
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
    if args.data is not None and args.data not in WORLDS:
        raise ValueError(f"eval scores smileys worlds only ({', '.join(WORLDS)}), got --data {args.data}; "
                         "for ImageNet use `mdt-teach sample-fid` and `mdt-teach fid`")
    if args.n < 2:
        raise ValueError(f"--n {args.n} is too small for a Fréchet distance; use at least 2 (e.g. 256)")
    if args.json and Path(args.json).is_dir():
        raise ValueError(f"--json {args.json} is a folder; name a file")
    space_timesteps(1000, args.steps)
    model, info = load_model(args.ckpt, use_ema=not args.no_ema)
    world = args.data or recorded_world(args.ckpt) or DEFAULT_WORLD
    images, labels = generate(model, args.n, steps=args.steps, method=args.method, cfg_scale=args.cfg,
                              seed=args.seed)
    scores = score_smileys(images, labels, world)
    fd = "n/a" if scores["fd_smileys"] is None else f"{scores['fd_smileys']:.3f}"
    print(f"{info} on {world}: pair agreement {scores['pair_agreement']:.1%}, two-eyes {scores['two_eyes']:.1%} of "
          f"{args.n} samples, FD-smileys {fd}")
    print("  funnel: " + ", ".join(f"{k[7:]} {v:.1%}" for k, v in scores.items() if k.startswith("funnel_")))
    if args.json:
        write_json(args.json, {"ckpt": str(args.ckpt), "world": world, "n": args.n, **scores})
    return 0

"""`mdt-teach race`: DiT vs MDT vs MDTv2 (+ ablations) on smileys at equal budgets (`race.run_race`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..race import VARIANTS, parse_variants, run_race
from ..sweep import run_sweep
from ..sampling import METHODS, space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach race`."""
    parser.add_argument("--budget", type=float, default=12.0, help="training minutes per model (default 12)")
    parser.add_argument("--out", default="data/race/cpu", help="results folder (default data/race/cpu)")
    parser.add_argument("--work", default="runs/race", help="checkpoints of unfinished variants (default runs/race)")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=250, help="evaluate every N steps (default 250)")
    parser.add_argument("--eval-samples", type=int, default=512, help="samples per evaluation (default 512)")
    parser.add_argument("--label", default="cpu", help="what ran it, stored in summary.json (cpu / gpu)")
    parser.add_argument("--sample-steps", default="ddim25",
                        help="respacing of the fixed evaluation sampler (default ddim25: ADM's DDIM-style stride)")
    parser.add_argument("--method", default="ddim", choices=METHODS,
                        help="the fixed evaluation sampler (default ddim: deterministic)")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of racing: the learning-rate sweep that picks each contestant's lr "
                             "(sweep.SWEEP_RULE; --budget minutes per run, results under OUT/sweep)")
    parser.add_argument("--probe-every", type=int, default=0,
                        help="run the missing-eye probe at every k-th evaluation (default 0: never)")


def run(args: argparse.Namespace) -> int:
    """Validate every flag before anything is written, then race."""
    variants = parse_variants(args.variants)
    if args.probe_every < 0:
        raise ValueError(f"--probe-every must be 0 (never) or a positive number of evaluations, got {args.probe_every}")
    if args.budget <= 0 or args.eval_every <= 0 or args.eval_samples < 2 or args.batch_size <= 0:
        raise ValueError("--budget, --eval-every and --batch-size must be positive and --eval-samples at least 2")
    for flag in ("out", "work"):
        if Path(getattr(args, flag)).is_file():
            raise ValueError(f"--{flag} {getattr(args, flag)} is a file; name a folder")
    space_timesteps(1000, args.sample_steps)
    if args.sweep:
        run_sweep(Path(args.out), args.budget, args.seed, args.batch_size, args.eval_samples, Path(args.work),
                  args.sample_steps, args.method)
        return 0
    run_race(Path(args.out), args.budget, args.seed, variants, args.batch_size, args.eval_every,
             args.eval_samples, work=Path(args.work), label=args.label, sample_steps=args.sample_steps,
             method=args.method, probe_every=args.probe_every)
    return 0

"""`mdt-teach race`: DiT vs MDT vs MDTv2 (+ ablations) on smileys at equal budgets (`race.run_race`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data import WORLDS
from ..race import CLASSIC_FOLDER, RACE_FOLDER, VARIANTS, RaceSettings, gpu_preset, parse_variants, run_race, summarize_folder
from ..sweep import run_sweep
from ..sampling import METHODS, space_timesteps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach race`."""
    d = RaceSettings()
    parser.add_argument("--budget", type=float, default=d.budget,
                        help=f"calibrated training minutes per (variant, seed) (default {d.budget:g})")
    parser.add_argument("--out", default=RACE_FOLDER, help=f"results folder (default {RACE_FOLDER})")
    parser.add_argument("--work", default="runs/race", help="checkpoints of unfinished runs (default runs/race)")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds for every chosen variant (default: each variant's own: "
                             f"0,1,2 for {', '.join(n for n, v in VARIANTS.items() if len(v.seeds) == 3)}; "
                             "0,1 for the others)")
    parser.add_argument("--seed", type=int, default=0, help="the sweep's seed (default 0)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--eval-minutes", type=float, default=d.eval_minutes,
                        help=f"calibrated minutes between evaluations (default {d.eval_minutes:g})")
    parser.add_argument("--eval-samples", type=int, default=d.n,
                        help=f"samples per evaluation along the way (default {d.n})")
    parser.add_argument("--final-samples", type=int, default=d.n_final,
                        help=f"samples of the final evaluation (default {d.n_final})")
    parser.add_argument("--world", default=d.world, choices=WORLDS,
                        help=f"the smileys world to race on (default {d.world}; the committed classic race, "
                             f"{CLASSIC_FOLDER}, is smileys-classic: pass that to --summarize it)")
    parser.add_argument("--label", default="cpu", help="what ran it, stored in summary.json (cpu / gpu)")
    parser.add_argument("--sample-steps", default=d.sample_steps,
                        help="respacing of the fixed evaluation sampler (default ddim25: ADM's DDIM-style stride)")
    parser.add_argument("--method", default=d.method, choices=METHODS,
                        help="the fixed evaluation sampler (default ddim: deterministic)")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of racing: the learning-rate sweep that picks each contestant's lr "
                             "(sweep.SWEEP_RULE; --budget minutes per run, results under OUT/sweep)")
    parser.add_argument("--preset", choices=["gpu"], default=None,
                        help="gpu: the main chain (DiT, + Min-SNR, MDTv2's architecture, its second pass, masking) "
                             "at S/2 (256 tokens, the paper's regime) in about eight minutes of one GPU; results in "
                             "data/race/gpu (its own budget and evaluation flags)")
    parser.add_argument("--summarize", action="store_true",
                        help="train nothing: rewrite OUT/summary.json from the runs finished so far")
    parser.add_argument("--probe-every", type=int, default=d.probe_every,
                        help=f"the missing-eye probe at every k-th evaluation and on {d.final_probe_faces} faces at the end "
                             f"(default {d.probe_every}; 0: never)")


def parse_seeds(text: str | None) -> list[int] | None:
    """"0,1,2" → [0, 1, 2] (None: each variant's own seeds); anything else → one clear error."""
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds takes comma-separated non-negative integers like 0,1,2, got {text!r}")
    return seeds


def run(args: argparse.Namespace) -> int:
    """Validate every flag before anything is written, then race."""
    variants = parse_variants(args.variants)
    if args.probe_every < 0:
        raise ValueError(f"--probe-every must be 0 (never) or a positive number of evaluations, got {args.probe_every}")
    seeds = parse_seeds(args.seeds)
    if args.budget <= 0 or args.eval_minutes <= 0 or args.eval_samples < 2 or args.batch_size <= 0:
        raise ValueError("--budget, --eval-minutes and --batch-size must be positive and --eval-samples at least 2")
    if args.final_samples < 0:
        raise ValueError(f"--final-samples must be 0 (none) or a number of samples, got {args.final_samples}")
    for flag in ("out", "work"):
        if Path(getattr(args, flag)).is_file():
            raise ValueError(f"--{flag} {getattr(args, flag)} is a file; name a folder")
    space_timesteps(1000, args.sample_steps)
    if args.sweep:
        run_sweep(Path(args.out), args.budget, args.seed, args.batch_size, args.eval_samples, Path(args.work),
                  args.sample_steps, args.method)
        return 0
    settings = RaceSettings(args.budget, args.batch_size, args.eval_minutes, args.eval_samples, args.final_samples,
                            args.sample_steps, args.method, args.probe_every,
                            final_probe_faces=RaceSettings.final_probe_faces if args.probe_every else 0,
                            world=args.world)
    if args.preset == "gpu":
        variants, settings = gpu_preset()
        out = Path(args.out if args.out != RACE_FOLDER else "data/race/gpu")
        label = args.label if args.label != "cpu" else "gpu"
        run_race(out, settings, variants, [0], work=Path(args.work) / "gpu", label=label)
        return 0
    if args.summarize:
        summarize_folder(Path(args.out), settings, args.label)
        return 0
    run_race(Path(args.out), settings, variants, seeds, work=Path(args.work), label=args.label)
    return 0

"""Train the small MDT that lesson 04's reconstruction widget loads, and write data/lesson04_mdt_tiny.pt.

    python tools/make_lesson_checkpoint.py --steps 600          # a fixed number of optimizer steps
    python tools/make_lesson_checkpoint.py --minutes 10         # or a wall-clock budget
    python tools/make_lesson_checkpoint.py --steps 1200 --lr 2e-3   # what made the committed one
    python tools/make_lesson_checkpoint.py --from-checkpoint runs/NAME/ckpt/ckpt_0001000.pt \
        --out data/lesson09_mdtv2_tiny.pt                        # or the EMA of a finished run

It runs the project's Trainer (the same dual-pass MDT loop as `mdt-teach train`) on smileys, then saves
the EMA weights in float16 with the model config (4.4 MiB for MDT-T/4), through
`mdt_teach.lessons.save_lesson_checkpoint`; its `info` records how (the command, `made_by`) and at which
commit. Runs go to a temporary folder; only the checkpoint is kept.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BYTES = 5 * 2**20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="MDT-T/4", help="MDT or MDTv2 preset (default MDT-T/4, lesson 04's MDT v1)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget (used when --steps is not given)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opt", default=None, help="adan | adamw (default: the tiny recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the tiny recipe's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the profile's)")
    parser.add_argument("--out", default=str(ROOT / "data" / "lesson04_mdt_tiny.pt"))
    parser.add_argument("--from-checkpoint", default=None,
                        help="take the EMA weights of this ckpt_*.pt of a finished run instead of training")
    args = parser.parse_args(argv)
    if args.steps is None and args.minutes is None and args.from_checkpoint is None:
        parser.error("give --steps, --minutes (e.g. --minutes 10) or --from-checkpoint")
    return args


def train(args: argparse.Namespace):
    """Run the Trainer in a temporary folder; return (EMA model, steps done, seconds)."""
    from mdt_teach.recipe import TrainConfig
    from mdt_teach.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=args.model, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size,
                          seed=args.seed, profile="tiny", out=str(Path(tmp) / "run"), eval_samples=0,
                          grid_samples=0, ckpt_every=10**9, keep=1, progress=False, threads=args.threads,
                          opt=args.opt, lr=args.lr)
        trainer = Trainer(cfg)
        if not trainer.model.is_mdt:
            raise ValueError(f"{args.model} is not an MDT model; lesson 04 needs MDT-T/4 or MDTv2-T/4")
        started = time.time()
        trainer.fit()
        return trainer.ema.model.cpu().eval(), trainer.step, time.time() - started, trainer.cfg


def from_checkpoint(path: Path):
    """(EMA model, info, training seconds) of a run's checkpoint written by the Trainer."""
    from mdt_teach.checkpoint import read_checkpoint
    from mdt_teach.compat import load_model

    state = read_checkpoint(path)
    model, _ = load_model(path, use_ema=True)
    cfg = state["config"]
    info = {"model": cfg["model"], "world": cfg.get("world"), "steps": int(state["step"]),
            "batch_size": cfg["batch_size"], "seed": cfg["seed"],
            "weights": "EMA", "source": f"{path.parent.parent.name}/{path.name}",
            "recipe": {k: cfg[k] for k in ("opt", "lr", "weighting", "ema_decay")}}
    return model, info, float(state.get("elapsed", 0.0))


def main(argv=None) -> int:
    from dataclasses import asdict

    from mdt_teach.lessons import save_lesson_checkpoint
    from provenance import provenance

    args = parse_args(argv)
    made = provenance(__file__, argv)
    if args.from_checkpoint:
        model, info, seconds = from_checkpoint(Path(args.from_checkpoint))
        steps = info["steps"]
    else:
        model, steps, seconds, cfg = train(args)
        info = {"model": args.model, "world": cfg.world, "steps": steps, "batch_size": args.batch_size,
                "seed": args.seed,
                "weights": "EMA", "recipe": {k: asdict(cfg)[k] for k in ("opt", "lr", "weighting", "ema_decay")}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_lesson_checkpoint(model, out, {**info, **made})
    size = out.stat().st_size
    print(f"wrote {out} ({size / 2**20:.2f} MiB) after {steps} steps in {seconds / 60:.1f} min")
    if size > MAX_BYTES:
        print(f"warning: {out.name} is over the 5 MiB limit for committed artefacts")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

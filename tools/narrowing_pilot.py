"""What narrowing the relational world would buy: pilots for the main job's 50% target (docs/toy_recipe.md).

    python tools/narrowing_pilot.py chance VARIANT                 # the painters' chance line only (seconds)
    python tools/narrowing_pilot.py train VARIANT [--seed 0]       # + the main job on it (≈10 min at 2 threads)
    python tools/narrowing_pilot.py score CKPT [--variant base]    # EMA and raw weights of a finished run

A variant narrows the eye ranges of `smileys` (mdt_teach/smileys.py: EYE_RADIUS, EYE_GAP_X, EYE_GAP_Y,
EYE_COLORS) *in this process only*; nothing in the library changes, and no run of a narrowed world is a
`smileys` run. For each variant: real faces' and every relation-blind painter's pair agreement on 1,000
faces (the cost of narrowing: the chance line rises) and, with `train`, the main job's recipe (MDTv2-T/4,
1,000 steps, seed) scored on 256 DDPM-50 samples (sampling seed 12345) of its EMA and of its raw weights
(the benefit). Each result is appended to data/narrowing_pilots.json (`records`) with the command that made it
and the commit it ran at; the file's own `made_by` and `commit` are those of its last write. The sizes are
parameters (`--n`, `--steps`, `--batch-size`, `--model-arg`, `--samples`, `--out`): tests/test_tools.py runs
`train r18` at a miniature of them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mdt_teach.checker as checker
import mdt_teach.painters as painters
import mdt_teach.smileys as smileys
from mdt_teach.checkpoint import write_json
from mdt_teach.cli.train import parse_model_args
from provenance import provenance

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "narrowing_pilots.json"
VARIANTS = {   # name → the ranges it replaces (the world's own: EYE_RADIUS (1.4, 2.8), gaps (1.0, 3.5), (0.3, 3.0))
    "base": {},
    "r18": {"EYE_RADIUS": (1.8, 2.8)},                                     # no eyes below radius 1.8
    "r20": {"EYE_RADIUS": (2.0, 2.8)},
    "c4": {"EYE_COLORS": smileys.EYE_COLORS[:4]},                          # 4 colours (brown dropped)
    "gap": {"EYE_GAP_X": (1.5, 3.5), "EYE_GAP_Y": (0.5, 2.5)},              # spacing and height narrowed
    "r18gap": {"EYE_RADIUS": (1.8, 2.8), "EYE_GAP_X": (1.5, 3.5), "EYE_GAP_Y": (0.5, 2.5)},
    "r18c4": {"EYE_RADIUS": (1.8, 2.8), "EYE_COLORS": smileys.EYE_COLORS[:4]},
}


def narrow(variant: str) -> dict:
    """Patch the eye ranges of `variant` into every module that reads them; returns them (as lists)."""
    for name, value in VARIANTS[variant].items():
        for module in (smileys, painters, checker):
            if hasattr(module, name):
                setattr(module, name, value)
    painters.donors.cache_clear()
    painters._blind_rates.cache_clear()
    return {k: np.asarray(v).tolist() for k, v in VARIANTS[variant].items()}


def chance(n: int = 1000) -> dict:
    """Real faces' and each relation-blind painter's pair agreement (and pair tests) on the chance line's n
    faces (`painters.painted_results`)."""
    x, y = smileys.smileys_batch(n, seed=painters.CHANCE_SEED)
    out = {"real": checker.two_eyes(x, y).pair_score}
    for p, r in painters.painted_results("smileys", n).items():
        out[p] = {"pair_agreement": r.pair_score, "pair_tests": r.pair_tests}
    return out


def score(path, samples: int = 256) -> dict:
    """Pair agreement, two-eyes verdict and pair tests of `samples` DDPM-50 samples of a checkpoint's EMA and raw
    weights."""
    from mdt_teach.compat import load_model
    from mdt_teach.sampling import generate
    out = {}
    for weights in ("ema", "raw"):
        model, _ = load_model(path, use_ema=weights == "ema")
        images, labels = generate(model, samples, steps="50", seed=12345)
        r = checker.two_eyes(images, labels)
        out[weights] = {"pair_agreement": r.pair_score, "two_eyes": r.score, "pair_tests": r.pair_tests}
    return out


def markdown(pilots: dict) -> str:
    """docs/toy_recipe.md's table from data/narrowing_pilots.json: per variant, its ranges, the chance line (the
    best blind painter) and, where a run was scored, the pair agreement of its EMA and raw weights."""
    lines = ["| variant | eye ranges changed | chance line (best blind painter) | main job: EMA | raw weights |",
             "|---|---|---|---|---|"]
    for r in sorted(pilots["records"], key=lambda r: list(VARIANTS).index(r["variant"])):
        best = max(v["pair_agreement"] for k, v in r["chance"].items() if k != "real")
        ranges = ", ".join(f"{k} {v}" if k != "EYE_COLORS" else f"{len(v)} colours" for k, v in r["ranges"].items())
        runs = [f"{r['scores'][w]['pair_agreement']:.1%}" for w in ("ema", "raw")] if "scores" in r else ["—", "—"]
        lines.append(f"| {r['variant']} | {ranges or '— (the world as it is)'} | {best:.1%} | {runs[0]} | {runs[1]} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("chance", "train", "score"))
    parser.add_argument("target", help="a variant (chance, train) or a checkpoint (score)")
    parser.add_argument("--variant", default="base", help="with score: the variant the checkpoint was trained on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--note", default="", help="how the scored run was made (with score)")
    parser.add_argument("--n", type=int, default=1000, help="faces of the chance line")
    parser.add_argument("--steps", type=int, default=1000, help="with train: the main job's steps")
    parser.add_argument("--batch-size", type=int, default=None, help="with train (default: the main job's)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="with train: a build_model override of MDTv2-T/4, repeatable, e.g. --model-arg depth=2")
    parser.add_argument("--samples", type=int, default=256, help="DDPM-50 samples scored per weights")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON the record is appended to")
    args = parser.parse_args(argv)
    made = provenance(__file__, argv)
    torch.set_num_threads(args.threads)
    variant = args.target if args.mode != "score" else args.variant
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    record = {"mode": args.mode, "variant": variant, "ranges": narrow(variant), **made}
    record["chance"] = chance(args.n)
    if args.mode == "train":
        from mdt_teach.recipe import TrainConfig
        from mdt_teach.train import Trainer
        began = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = TrainConfig(model="MDTv2-T/4", model_args=parse_model_args(args.model_arg), steps=args.steps,
                              batch_size=args.batch_size, seed=args.seed, profile="tiny", out=str(Path(tmp) / "run"),
                              eval_samples=0, grid_samples=0, progress=False, threads=args.threads)
            Trainer(cfg, log=lambda *a, **k: None).fit()
            record.update(seed=args.seed, train_seconds=round(time.time() - began, 1),
                          scores=score(Path(tmp) / "run" / "ckpt" / f"ckpt_{args.steps:07d}.pt", args.samples))
    elif args.mode == "score":
        record.update(checkpoint=args.target, note=args.note, scores=score(args.target, args.samples))
    records = json.loads(args.out.read_text())["records"] if args.out.exists() else []
    write_json(args.out, {**made, "records": records + [record]})
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

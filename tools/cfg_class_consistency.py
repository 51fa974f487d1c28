"""Lesson 09's guidance widget measured: how much class consistency does guidance buy, at which w and pow?

    python tools/cfg_class_consistency.py [--n 512] [--out data/cfg_class_consistency.json]
                                          [--checkpoint data/lesson09_mdtv2_tiny.pt]

Samples the committed lesson 09 checkpoint with the widget's sampler (DDIM-10, classes in turn, one sampling
seed, so every setting starts from the same noise) at each guidance scale w and schedule power pow, and
scores each set with the checker: `class_consistency` is the fraction whose mouth reads as the class it was
asked for (`checker.two_eyes(...).expression_ok`; a face without a readable mouth counts as a miss). As a
cross-check from a second judge, `classifier_agreement` is the same fraction read by the FD-smileys feature
net's head (its most likely smiley class, whether or not the eyes agree). Pair agreement and the two-eyes
verdict ride along. A rate p of n samples carries a binomial standard error √(p(1−p)/n), written beside it.
`--checkpoint` (relative to the repository root, or absolute) measures another lesson checkpoint:
tests/test_viz_cfg.py runs a tiny one.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from mdt_teach.checkpoint import write_json
from mdt_teach.diffusion import GaussianDiffusion
from mdt_teach.metrics import load_feature_net, two_eyes
from mdt_teach.sampling import generate
from mdt_teach.smileys import SMILEY_CLASSES
from mdt_teach.viz.sampling import WIDGET_STEPS
from lesson_checkpoint_cli import lesson_checkpoint_tool
from provenance import provenance


SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)
POWERS = (0.0, 4.0)          # constant (DiT) and MDT's FID setting


@torch.no_grad()
def classifier_reading(images: torch.Tensor) -> torch.Tensor:
    """The feature net's reading of each face's expression: its most likely smiley class, eyes aside (N,)."""
    logits = load_feature_net()(images.float())                      # (N, 14): 4 + 4 "eyes disagree" + 10 digits
    k = len(SMILEY_CLASSES)
    return logits[:, : 2 * k].argmax(1) % k


def rate(flags, n: int) -> dict:
    """A pass rate and its binomial standard error, rounded for the record."""
    p = float(torch.as_tensor(flags).float().mean())
    return {"rate": round(p, 4), "standard_error": round(math.sqrt(p * (1 - p) / n), 4)}


def main(argv=None) -> int:
    args, model, info = lesson_checkpoint_tool(__doc__, 512, "data/cfg_class_consistency.json", argv)
    made = provenance(__file__, argv)
    diffusion, rows, unguided = GaussianDiffusion(), [], None
    for power in POWERS:
        for w in SCALES:
            if w == 1.0 and unguided is not None:                          # w = 1 is unguided whatever pow is
                rows.append({**unguided, "scale_pow": power})
                continue
            x, y = generate(model, args.n, diffusion, steps=WIDGET_STEPS, method="ddim", cfg_scale=w,
                            scale_pow=power, seed=3)
            r = two_eyes(x, y)
            consistency, classifier = rate(r.expression_ok, args.n), rate(classifier_reading(x) == y, args.n)
            rows.append({"cfg_scale": w, "scale_pow": power, "n": args.n,
                         "class_consistency": consistency["rate"], "standard_error": consistency["standard_error"],
                         "classifier_agreement": classifier["rate"],
                         "classifier_standard_error": classifier["standard_error"],
                         "pair_agreement": round(r.pair_score, 4), "two_eyes": round(r.score, 4)})
            unguided = rows[-1] if w == 1.0 else unguided
            print(rows[-1], flush=True)
    write_json(Path(args.out), {"checkpoint": args.checkpoint, "model": info["model"], "world": info.get("world"),
                                "sampler": f"ddim {WIDGET_STEPS}", "seed": 3, **made, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`mdt-teach eval`: the two-eyes score and FD-smileys of a checkpoint's samples (also used by the trainer).

Samples come from a fixed sampling seed and classes in turn, so two checkpoints are compared on the same
noise; FD-smileys is measured against as many real faces of a world no training run uses (REFERENCE_SEED).
"""
from __future__ import annotations

import argparse
import json
import warnings

import torch

REFERENCE_SEED = 1_000_003   # the smileys world of the FD reference faces


def generate(model, n: int, diffusion=None, steps="100", cfg_scale: float = 1.0, seed: int = 0,
             method: str = "ddpm", batch: int = 256, labels=None, scale_pow: float = 4.0):
    """n samples of `model` (classes 0, 1, 2, ... in turn unless `labels`), drawn through one seeded
    generator so the global RNG is never touched; returns (x0 (n, C, H, W) on the CPU, labels)."""
    from .diffusion import GaussianDiffusion
    from .sampling import sample

    diffusion = diffusion or GaussianDiffusion()
    device = next(model.parameters()).device
    labels = torch.arange(n) % model.num_classes if labels is None else torch.as_tensor(labels).long()
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (model.in_channels, model.input_size, model.input_size)
    chunks = [sample(model, (len(y),) + shape, y.to(device), diffusion, steps=steps, cfg_scale=cfg_scale,
                     scale_pow=scale_pow, method=method, generator=gen) for y in labels.split(batch)]
    images = torch.cat(chunks).float().cpu() if chunks else torch.zeros((0,) + shape)
    return images, labels


_REFERENCE_STATS: dict = {}


def reference_stats(n: int):
    """(mu, sigma) of n real faces from a world the training never sees (cached; FD needs equal counts)."""
    from .data import smileys_batch
    from .metrics import gaussian_stats, smiley_features

    if n not in _REFERENCE_STATS:
        _REFERENCE_STATS[n] = gaussian_stats(smiley_features(smileys_batch(n, seed=REFERENCE_SEED)[0]))
    return _REFERENCE_STATS[n]


def score_smileys(images, labels=None) -> dict:
    """two_eyes (fraction passing), its funnel, expression accuracy and FD-smileys against as many real faces."""
    from .metrics import fd_smileys, two_eyes

    images = torch.as_tensor(images).clamp(-1, 1)
    result = two_eyes(images, labels)
    funnel = {f"funnel_{k}": float(v) for k, v in result.funnel.items()}
    extra = {} if result.expression_accuracy is None else {"expression": result.expression_accuracy}
    try:
        fd = float(fd_smileys(images, reference_stats(len(images))))
    except FileNotFoundError as err:  # the feature net is a committed artefact; say so, keep the score
        warnings.warn(f"FD-smileys skipped: {err}", stacklevel=2)
        fd = None
    return {"two_eyes": float(result.score), **funnel, **extra, "fd_smileys": fd}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach eval`."""
    parser.add_argument("--ckpt", required=True, help="a ckpt_*.pt of a run (its EMA weights are used)")
    parser.add_argument("--data", default="smileys", help="only smileys has a structure checker")
    parser.add_argument("--n", type=int, default=256, help="number of samples (default 256)")
    parser.add_argument("--steps", default="100", help="DDPM sampling steps / respacing, e.g. 100, 50 or "
                                                       "ddim50 (ADM's DDIM stride; the sampler stays DDPM)")
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale (1 = none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    parser.add_argument("--json", default=None, help="also write the scores to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Load, sample, score, print."""
    from .sample_cli import load_model

    if args.data != "smileys":
        raise ValueError(f"eval scores smileys only (two-eyes + FD-smileys), got --data {args.data}; "
                         "for ImageNet use metrics.fid_against_reference")
    if args.n < 2:
        raise ValueError(f"--n {args.n} is too small for a Fréchet distance; use at least 2 (e.g. 256)")
    model, info = load_model(args.ckpt, use_ema=not args.no_ema)
    images, labels = generate(model, args.n, steps=args.steps, cfg_scale=args.cfg, seed=args.seed)
    scores = score_smileys(images, labels)
    fd = "n/a" if scores["fd_smileys"] is None else f"{scores['fd_smileys']:.3f}"
    print(f"{info}: two-eyes {scores['two_eyes']:.1%} of {args.n} samples, FD-smileys {fd}")
    print("  funnel: " + ", ".join(f"{k[7:]} {v:.1%}" for k, v in scores.items() if k.startswith("funnel_")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ckpt": str(args.ckpt), "n": args.n, **scores}, f, indent=1)
    return 0

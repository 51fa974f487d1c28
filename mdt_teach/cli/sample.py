"""`mdt-teach sample`: an image grid from a checkpoint — one of ours (EMA weights) or an official MDT / DiT one.

Official checkpoints hold SD-VAE latents; their samples are decoded with `mdt_teach.vae`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..compat import load_model
from ..config import setup
from ..sampling import METHODS, generate, space_timesteps
from ..vae import decode_if_latent
from ..viz.images import save_grid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach sample`."""
    parser.add_argument("--ckpt", required=True, help="ckpt_*.pt of a run, or an official MDT checkpoint")
    parser.add_argument("--n", type=int, default=32, help="number of images (default 32)")
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale w (power-cosine schedule; 1 = none)")
    parser.add_argument("--scale-pow", type=float, default=4.0, help="power of the CFG schedule (official 4)")
    parser.add_argument("--steps", default="100", help="respacing: 250, 100, ddim50 (ADM's DDIM-style stride) ... "
                                                       "(default 100)")
    parser.add_argument("--method", default="ddpm", choices=METHODS, help="sampler (default ddpm)")
    parser.add_argument("--labels", default=None, help="comma-separated class ids (default: classes in turn)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--decode-layer", type=int, default=None,
                        help="official MDT v1 checkpoints only: blocks after the side-interpolater (official 2)")
    parser.add_argument("--no-ema", action="store_true", help="our checkpoints: the raw weights, not the EMA")
    parser.add_argument("--out", default="samples.png", help="output PNG (default samples.png)")


def _labels(text: str | None, n: int):
    """'1,3' → tensor of n labels cycling through 1, 3 (None: classes in turn)."""
    if text is None:
        return None
    try:
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--labels {text!r} must be comma-separated integers, e.g. 0,1,2") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"--labels {text!r} must name class ids ≥ 0, e.g. 0,1,2")
    return torch.tensor([ids[i % len(ids)] for i in range(n)])


def run(args: argparse.Namespace) -> int:
    """Check the arguments, load, sample, decode, save the grid."""
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise ValueError(f"--out {out} must name a .png file")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    space_timesteps(1000, args.steps)  # a bad --steps fails before the model is loaded
    labels = _labels(args.labels, args.n)
    device = setup(quiet=True).device  # the profile decides (config is the only module that asks CUDA)
    model, info = load_model(args.ckpt, use_ema=not args.no_ema, device=device, decode_layer=args.decode_layer)
    if labels is not None and int(labels.max()) >= model.num_classes:
        raise ValueError(f"--labels go up to {int(labels.max())} but the model has {model.num_classes} classes")
    images, _ = generate(model, args.n, steps=args.steps, cfg_scale=args.cfg, seed=args.seed,
                         method=args.method, labels=labels, scale_pow=args.scale_pow)
    images = decode_if_latent(model, images.to(device)).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, out, nrow=min(8, args.n))
    print(f"{info}: {args.n} samples ({args.method} {args.steps} steps, cfg {args.cfg:g}) → {out}")
    return 0

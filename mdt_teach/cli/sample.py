"""`mdt-teach sample`: an image grid from a checkpoint — one of ours (EMA weights) or an official MDT / DiT one.

Official checkpoints hold SD-VAE latents; their samples are decoded with `mdt_teach.vae`. `--preset fid`
and `--preset demo` set the official settings (`sampling.preset`: MDT's, or DiT's own for a DiT checkpoint);
any flag given explicitly wins.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..compat import load_model
from ..config import setup
from ..sampling import METHODS, PRESETS, default_scale_pow, generate, preset, space_timesteps
from ..vae import VAE_DECODERS, decode_if_latent
from ..images import save_grid

DEFAULTS = dict(steps="100", method="ddpm", cfg_scale=1.0, scale_pow=None, vae_decoder="mse", seed=0, labels=None)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach sample` (every sampling flag defaults to None: the preset's, else DEFAULTS)."""
    parser.add_argument("--ckpt", required=True, help="ckpt_*.pt of a run, or an official MDT checkpoint")
    parser.add_argument("--n", type=int, default=32, help="number of images (default 32)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="official settings: fid = 250 DDPM steps, cfg 3.8, pow 4, ema decoder, random "
                             "classes (scripts/image_sample.py; DiT checkpoints: cfg 1.5, pow 0, as DiT's "
                             "sample_ddp.py); demo = 250 steps, cfg 4.0, pow 0.01 (DiT: 0), seed 1, the demo's "
                             "six classes (infer_mdt.py)")
    parser.add_argument("--cfg", dest="cfg_scale", type=float, default=None,
                        help="guidance scale w (1 = none; default 1)")
    parser.add_argument("--scale-pow", type=float, default=None,
                        help="power of the guidance schedule (default: 4 for MDT, 0 = constant for DiT, as each "
                             "model's own code)")
    parser.add_argument("--steps", default=None, help="respacing: 250, 100, ddim50 (ADM's DDIM-style stride) ... "
                                                      "(default 100)")
    parser.add_argument("--method", default=None, choices=METHODS, help="sampler (default ddpm)")
    parser.add_argument("--labels", default=None,
                        help="comma-separated class ids, or 'random' (default: classes in turn)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default 0)")
    parser.add_argument("--vae-decoder", default=None,
                        help=f"latent models: {' | '.join(VAE_DECODERS)} (SD-VAE decoders), a local folder, or tiny "
                             "(default mse)")
    parser.add_argument("--decode-layer", type=int, default=None,
                        help="official MDT v1 checkpoints only: blocks after the side-interpolater (official 2)")
    parser.add_argument("--no-ema", action="store_true", help="our checkpoints: the raw weights, not the EMA")
    parser.add_argument("--out", default="samples.png", help="output PNG (default samples.png)")


def sampling_settings(args: argparse.Namespace, family: str | None = None) -> dict:
    """DEFAULTS, then the preset (DiT's own for `family` "DiT"), then every flag given explicitly."""
    settings = {**DEFAULTS, **preset(args.preset, family)}
    settings.update({k: getattr(args, k) for k in DEFAULTS if getattr(args, k, None) is not None})
    return settings


def parse_labels(text: str | None, n: int, num_classes: int | None, seed: int = 0):
    """'1,3' → n labels cycling through 1, 3; 'random' → n seeded random classes; None → None (in turn).
    With num_classes None only the text is checked (before the model is loaded)."""
    if text is None:
        return None
    if text == "random":
        return torch.randint(num_classes or 1, (n,), generator=torch.Generator().manual_seed(seed))
    try:
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--labels {text!r} must be comma-separated integers (e.g. 0,1,2) or 'random'") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"--labels {text!r} must name class ids ≥ 0, e.g. 0,1,2")
    if num_classes is not None and max(ids) >= num_classes:
        raise ValueError(f"--labels go up to {max(ids)} but the model has {num_classes} classes")
    return torch.tensor([ids[i % len(ids)] for i in range(n)])


def run(args: argparse.Namespace) -> int:
    """Check the arguments, load, sample, decode, save the grid."""
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise ValueError(f"--out {out} must name a .png file")
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    s = sampling_settings(args)
    space_timesteps(1000, s["steps"])  # a bad --steps or --labels fails before the model is loaded
    parse_labels(s["labels"], args.n, None)
    device = setup(quiet=True).device  # the profile decides (config is the only module that asks CUDA)
    model, info = load_model(args.ckpt, use_ema=not args.no_ema, device=device, decode_layer=args.decode_layer)
    s = sampling_settings(args, getattr(model, "family", None))   # a DiT checkpoint gets DiT's own preset
    labels = parse_labels(s["labels"], args.n, model.num_classes, s["seed"])
    scale_pow = default_scale_pow(model) if s["scale_pow"] is None else s["scale_pow"]
    images, _ = generate(model, args.n, steps=s["steps"], cfg_scale=s["cfg_scale"], seed=s["seed"],
                         method=s["method"], labels=labels, scale_pow=scale_pow)
    images = decode_if_latent(model, images.to(device), s["vae_decoder"]).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(images, out, nrow=min(8, args.n))
    print(f"{info}: {args.n} samples ({s['method']} {s['steps']} steps, cfg {s['cfg_scale']:g}, pow {scale_pow:g}) "
          f"→ {out}")
    return 0

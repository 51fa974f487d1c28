"""`mdt-teach sample`: an image grid from a checkpoint — one of ours (EMA weights) or an official MDT one.

Official checkpoints (plain state dicts, e.g. `mdt_xl2_v2_ckpt.pt`) go through `mdt_teach.compat`; their
samples are SD-VAE latents, decoded with `mdt_teach.vae` (spec §2.4).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .config import setup


def load_model(path, use_ema: bool = True, device="cpu", decode_layer: int | None = None):
    """(model in eval mode, one-line description) from our ckpt_*.pt or an official checkpoint."""
    from .train import FORMAT

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass a ckpt_*.pt of a run or an official .pt")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        from .models import from_config

        model = from_config(state["model_config"])
        model.load_state_dict(state["ema" if use_ema else "model"])
        info = f"{state['config']['model']} step {state['step']} ({'EMA' if use_ema else 'raw'} weights)"
    else:
        from . import compat

        model = compat.load_official(path, decode_layer=decode_layer)
        info = f"official checkpoint {path.name}"
    return model.to(device).eval(), info


def decode_if_latent(model, x: torch.Tensor) -> torch.Tensor:
    """Latent samples (4 channels) → pixels through the SD-VAE decoder (sd-vae-ft-mse, as `infer_mdt.py`);
    pixel samples pass through."""
    if model.in_channels != 4:
        return x
    from .vae import load_vae

    return load_vae(device=x.device).decode(x).float().clamp(-1, 1)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach sample`."""
    parser.add_argument("--ckpt", required=True, help="ckpt_*.pt of a run, or an official MDT checkpoint")
    parser.add_argument("--n", type=int, default=32, help="number of images (default 32)")
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale w (power-cosine schedule; 1 = none)")
    parser.add_argument("--scale-pow", type=float, default=4.0, help="power of the CFG schedule (official 4)")
    parser.add_argument("--steps", default="100", help="sampling steps / respacing: 250, 100, ddim50 ... (default 100)")
    parser.add_argument("--method", default="ddpm", choices=("ddpm", "ddim"))
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
    return torch.tensor([ids[i % len(ids)] for i in range(n)])


def run(args: argparse.Namespace) -> int:
    """Check the arguments, load, sample, decode, save the grid."""
    from .eval_cli import generate
    from .sampling import space_timesteps
    from .viz.images import save_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out} must be a .png file")
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

"""`mdt-teach inpaint --ckpt PATH --image IN.png --hide MASK.png --out OUT.png`: redraw the hidden part of an
image with a diffusion model (`sampling.inpaint`, RePaint). The mask is white where the model draws;
`--hide-tokens 10,11,18` hides whole tokens instead. Latent models (official ImageNet checkpoints) inpaint
in latent space: the image is encoded by `--vae`, a latent pixel is redrawn when any of its pixels is
hidden, and the result is decoded by `--vae-decoder` (tested here with tiny latent models only)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..compat import load_model
from ..data import load_image
from ..diffusion import GaussianDiffusion
from ..sampling import inpaint, keep_from_tokens, space_timesteps
from ..vae import DEFAULT_VAE, VAE_DECODERS, decode_if_latent, load_vae
from ..images import save_grid


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `mdt-teach inpaint`."""
    parser.add_argument("--ckpt", required=True, help="a checkpoint of ours or an official one")
    parser.add_argument("--image", required=True, help="the image (centre-cropped and resized to the model's size)")
    parser.add_argument("--hide", default=None, help="mask image, white where the model should draw")
    parser.add_argument("--hide-tokens", default=None, help="or comma-separated token indices (row-major) to hide")
    parser.add_argument("--label", type=int, default=0, help="class to draw it as (default 0)")
    parser.add_argument("--steps", default="50", help="respaced steps (default 50)")
    parser.add_argument("--jump-length", type=int, default=5, help="RePaint jump length (default 5)")
    parser.add_argument("--resamples", type=int, default=3, help="RePaint resamplings (1 = plain replacement)")
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale (default 1: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", default=DEFAULT_VAE, help="latent models: the encoder's VAE (hub id, folder, tiny)")
    parser.add_argument("--vae-decoder", default="mse",
                        help=f"latent models: {' | '.join(VAE_DECODERS)} | folder | tiny")
    parser.add_argument("--out", default="inpainted.png", help="output PNG: the image, its mask, the result")


def _hidden(args, model, pixels: int) -> torch.Tensor:
    """(1, 1, S, S) float, 1 where the model draws, at pixel resolution S."""
    if (args.hide is None) == (args.hide_tokens is None):
        raise ValueError("give exactly one of --hide MASK.png or --hide-tokens 1,2,3")
    if args.hide is not None:
        try:
            with Image.open(args.hide) as img:
                mask = np.asarray(img.convert("L").resize((pixels, pixels), Image.NEAREST)) > 127
        except (OSError, ValueError) as err:
            raise ValueError(f"--hide {args.hide} is not a readable image ({err.__class__.__name__}); pass a PNG "
                             "that is white where the model should draw") from None
        return torch.from_numpy(mask).float()[None, None]
    grid = model.input_size // model.patch_size
    try:
        ids = [int(v) for v in args.hide_tokens.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--hide-tokens {args.hide_tokens!r} must be comma-separated integers") from None
    if not ids or min(ids) < 0 or max(ids) >= grid * grid:
        raise ValueError(f"--hide-tokens must lie in 0..{grid * grid - 1} (a {grid}×{grid} token grid)")
    tokens = torch.zeros(1, grid * grid, dtype=torch.bool)
    tokens[0, ids] = True
    hidden = keep_from_tokens(tokens, model.patch_size)                            # in model space
    return F.interpolate(hidden, size=(pixels, pixels), mode="nearest")


def run(args: argparse.Namespace) -> int:
    """Check, load, encode if latent, inpaint, decode, save a strip: image, mask, result."""
    out = Path(args.out)
    if out.suffix.lower() != ".png" or out.is_dir():
        raise ValueError(f"--out {out} must name a .png file")
    space_timesteps(1000, args.steps)
    if not Path(args.image).is_file():
        raise FileNotFoundError(f"--image {args.image} does not exist")
    model, info = load_model(args.ckpt)
    if not 0 <= args.label < model.num_classes:
        raise ValueError(f"--label {args.label} is not a class of this model (0..{model.num_classes - 1})")
    latent = model.in_channels == 4
    vae = load_vae(args.vae) if latent else None
    pixels = model.input_size * (vae.downsample if latent else 1)
    image = torch.from_numpy(np.array(load_image(args.image, pixels))).float().permute(2, 0, 1)[None] / 127.5 - 1
    hidden = _hidden(args, model, pixels)
    x = vae.encode(image, torch.Generator().manual_seed(args.seed)) if latent else image
    keep = 1 - (F.max_pool2d(hidden, vae.downsample) if latent else hidden)       # a latent pixel: any pixel hidden
    done = inpaint(model, x, keep, torch.tensor([args.label]), GaussianDiffusion(), steps=args.steps,
                   jump_length=args.jump_length, resamples=args.resamples, cfg_scale=args.cfg,
                   generator=torch.Generator().manual_seed(args.seed))
    done = decode_if_latent(model, done, args.vae_decoder) if latent else done
    out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(torch.cat([image, hidden.expand(-1, 3, -1, -1) * 2 - 1, done.cpu().clamp(-1, 1)]), out, nrow=3,
              scale=max(1, 128 // pixels))
    print(f"{info}: {int(hidden.sum())} of {pixels * pixels} pixels redrawn → {out}")
    return 0
